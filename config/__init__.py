"""Typed settings (``settings.py``), the policy schema (``policy.py``), the one duration
grammar (``durations.py``) and the annotated example file: validated at start-up, with errors
that name the bad field.

May import ``oci`` and ``verifiers`` (the key and VEX formats a policy names); nothing that
serves, stores or schedules.
"""
