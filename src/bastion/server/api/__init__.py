"""The REST API under ``/api/v1``: problem JSON errors (RFC 9457), Bearer auth."""
