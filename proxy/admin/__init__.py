"""The admin HTTP API (``/admin/api/v1``): verdicts, releases, rescans, policy dry-runs and the
access log, for ``gatekeeper quarantine`` and ``gatekeeper policy`` and any operator's tool.

One module per resource (``images``, ``policy``, ``audit``, ...), one route table
(``routes``), one error catalogue (``errors``), the models of what comes in (``bodies``) and
goes out (``models``, ``models_policy``), and ``openapi`` generating the document that describes
all of it from the route table and the models (``openapi_operations`` holds only its words).
"""
