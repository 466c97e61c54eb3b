"""Client authentication (Docker token auth and Basic) and per-repository authorization.

Clients authenticate to the gatekeeper only; the upstream's credentials stay in settings.
"""
