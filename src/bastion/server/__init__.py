"""The Bastion server: an OAuth 2.1 / OpenID Connect authorization server.

Install with ``pip install "bastion[server]"``. ``create_app(settings)`` builds the
ASGI application; ``bastion serve`` runs it.
"""
