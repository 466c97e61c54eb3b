"""Layer scanning: read each layer once, as a stream, into a package inventory.

``reader`` turns a layer blob into entries (never on disk, never whole in memory, hostile input
becomes problems, not crashes); ``filesystem`` applies OCI whiteouts across layers; ``inventory``
and ``ecosystems`` turn package databases into packages; ``verifier`` is the ``inventory``
verifier that ties them together with the per-layer cache.
"""
