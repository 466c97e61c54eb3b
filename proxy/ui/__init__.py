"""The web console under ``/ui/``: the people who review and release quarantined images do it
in a browser, on the gatekeeper's own listener, with no JavaScript and nothing fetched from
elsewhere (it works on an air-gapped machine).

Pages are rendered on the server with Jinja2 (autoescape on, every shown string passed through
``config.text.visible``) through aiohttp-jinja2; the style sheet is a package file. Who may see
what is the admin API's rights model (``proxy.auth.rights``, checked by ``proxy.admin.access``)
and what an action does is the admin API's own code (``proxy.admin.actions``): the console is
another face of the same service, never a second implementation of it.

One module per page (``overview``, ``queue``, ``image``, ``actions``, ``accesslog``,
``policies``, ``signin``); ``app`` holds the route table, ``guard`` the sessions and CSRF
checks, ``render`` the templates, ``headers`` the Content-Security-Policy and error pages.
"""
