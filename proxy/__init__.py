"""The gatekeeper's HTTP side: the aiohttp app and its route table, one handler module per
resource of the Distribution spec, the gate that decides each pull, forwarding to the upstream
registry, authentication, the admin API, the web console, webhooks and the access log.

May import ``services`` (the background work it starts), ``upstream`` (the registry client it
forwards through), ``verifiers``, ``storage``, ``config`` and ``oci``; never ``cli``
(``__main__.py`` is only the ``python -m proxy`` shim).
"""
