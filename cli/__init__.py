"""The ``gatekeeper`` command line: one module per command group, ``main`` in ``cli/main.py``.

The only package that parses arguments (``argparse``). It may import every other package
(``proxy`` to serve, ``services``, ``upstream``, ``storage``, ``config``, ``verifiers``,
``oci``); nothing but ``proxy/__main__.py`` (the ``python -m proxy`` shim) imports it.
"""
