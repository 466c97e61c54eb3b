"""Webhooks: signed CloudEvents to external receivers whenever an image's verdict changes.

Events: ``image.quarantined``, ``image.passed``, ``image.released``, ``image.requarantined``
(an admin's re-quarantine, or a release that expired), and ``image.new-findings``: a
re-evaluation (an advisory import, a policy change; see ``services/reevaluate.py``) found findings
that would block an image which nevertheless stays pullable, because its policy says
``on_new_findings = "notify"`` or an admin released it. Its ``new_state`` is the unchanged
``passed`` or ``released``, its ``reason`` starts with the trigger (``advisory-import (data
version N)``) and names the new findings. An image a re-evaluation quarantines is an ordinary
``image.quarantined`` whose ``reason`` starts with the trigger. Each webhook in settings
subscribes to some or all of them.

Request (one POST per delivery attempt)::

    Content-Type: application/cloudevents+json
    X-Gatekeeper-Delivery: <delivery id; the same on every retry of one delivery>
    X-Gatekeeper-Event: <the CloudEvents type, for routing without parsing>
    X-Gatekeeper-Timestamp: <unix seconds when this attempt was signed>
    X-Gatekeeper-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The body is a CloudEvents 1.0 structured-mode JSON document (``specversion``, ``id``,
``source``, ``type``, ``subject`` = ``REPOSITORY@DIGEST``, ``time``, ``datacontenttype``,
``data`` = repository, digest, old_state, new_state, actor, reason, policy). It is serialised
once and stored, so every retry sends the same bytes and the same ``id``.

Signature scheme, exactly: take the ``X-Gatekeeper-Timestamp`` value as ASCII digits, append
one ``.`` and then the raw body bytes as received (before any JSON parsing); HMAC-SHA256 that
with the webhook's secret (UTF-8) as key; compare, in constant time, ``sha256=`` plus the
lower-case hex digest with ``X-Gatekeeper-Signature``. The timestamp is in the signed material
for replay protection: without it, anyone who once saw a signed ``image.released`` could
replay it to the receiver forever. Receivers should refuse timestamps more than five minutes
from their clock and deduplicate by the CloudEvents ``id`` within that window
(``cloudevents.verify_signature`` is the reference). Each attempt is signed afresh, so a retry
hours later still carries a fresh timestamp.

Delivery: a 2xx answer is delivered; anything else (another status, a redirect, a timeout, a
refused connection) is retried after ``retry_base_seconds * 2**(n-1)`` seconds (capped at an
hour) until ``max_attempts``, then the delivery is ``failed``. Deliveries and every attempt are
rows in the database (``storage/webhooks.py``), so a restart loses none. Events of one image
can arrive out of order when one of them is retried: order by ``time``. The secret is never
logged or stored, and a webhook URL appears in logs only as scheme, host and port.

Layout: ``cloudevents`` builds the body and the signature (pure), ``sender`` makes one attempt
over HTTP (no SQL), ``dispatcher`` records deliveries from the event bus and schedules attempts.
"""

from proxy.webhooks.dispatcher import WebhookDispatcher
from proxy.webhooks.sender import make_webhook_client

__all__ = ["WebhookDispatcher", "make_webhook_client"]
