"""The gatekeeper's HTTP side: the aiohttp app, OCI routes, forwarding, access log and CLI."""
