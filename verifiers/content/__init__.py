"""Content checks: secrets, malware and hardened configuration, from the same layer reads as the
inventory.

Each verifier registers a per-layer scanner with the process's shared
:class:`~verifiers.layers.LayerReads`, so enabling them costs CPU on a read that happens anyway,
not another download of every layer. ``rules`` is the catalogue of their rule ids (stable
strings a policy blocks on or waives), ``hits`` the per-layer result they cache, ``base`` what
the three verifiers share (among it: what a check could not inspect is a blocking finding of
its own), ``secret_patterns`` and ``secret_windows`` what a secret looks like in a text file,
and in binaries and files searched as they stream by.
"""
