"""I/O-free OAuth 2.0 / OpenID Connect pieces shared by the SDK and the server.

Nothing here performs I/O or imports ``bastion.client`` or ``bastion.server``.
"""
