"""Image verifiers (signatures, layer scans, policy). Not built yet: see the verification
pipeline issue. The package exists so the layout matches the design card from the start."""
