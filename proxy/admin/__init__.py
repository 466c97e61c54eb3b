"""The admin HTTP API (``/admin/api/v1``): verdicts, releases, rescans, policy dry-runs and the
access log, for ``gatekeeper quarantine`` and ``gatekeeper policy`` and any operator's tool.

One module per resource (``images``, ``policy``, ``audit``), one route table (``routes``), one
error catalogue (``errors``), and ``openapi`` describing all of it.
"""
