"""Webhook payloads and signatures: CloudEvents shape, the signed material, settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import pytest

from config.settings import WEBHOOK_EVENT_TYPES, ConfigError, WebhookSettings, load_settings
from proxy.webhooks.cloudevents import request_headers, signature, to_cloud_event, verify_signature
from proxy.webhooks.dispatcher import retry_delay
from proxy.webhooks.sender import Hook, webhook_key
from services.events import EVENT_TYPES, VerdictChange

DIGEST = "sha256:" + "ab" * 32
SECRET = b"0123456789abcdef-secret"


def change(event: str = "quarantined", **extra: object) -> VerdictChange:
    values: dict[str, object] = {
        "event": event,
        "repository": "team/app",
        "digest": DIGEST,
        "old_state": "pending",
        "new_state": "quarantined",
        "actor": "gatekeeper",
        "reason": "2 critical (CVE-2099-0001)",
        "time": datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "policy": "default",
        **extra,
    }
    return VerdictChange(**values)  # type: ignore[arg-type]


def test_cloud_event_is_structured_cloudevents_1_0() -> None:
    event = to_cloud_event(change(), "https://gate.example.com")
    assert event is not None
    doc = json.loads(event.body)
    assert doc == {
        "specversion": "1.0",
        "id": event.id,
        "source": "https://gate.example.com",
        "type": "image.quarantined",
        "subject": f"team/app@{DIGEST}",
        "time": "2024-06-01T12:00:00.123456Z",
        "datacontenttype": "application/json",
        "data": {
            "repository": "team/app",
            "digest": DIGEST,
            "old_state": "pending",
            "new_state": "quarantined",
            "actor": "gatekeeper",
            "reason": "2 critical (CVE-2099-0001)",
            "policy": "default",
        },
    }
    assert uuid.UUID(event.id).version == 4
    assert (event.type, event.subject) == ("image.quarantined", f"team/app@{DIGEST}")


@pytest.mark.parametrize(
    ("event", "cloud_type"),
    [
        ("passed", "image.passed"),
        ("released", "image.released"),
        ("requarantined", "image.requarantined"),
        ("release-expired", "image.requarantined"),
    ],
)
def test_event_types(event: str, cloud_type: str) -> None:
    made = to_cloud_event(change(event), "registry-gatekeeper")
    assert made is not None and made.type == cloud_type


@pytest.mark.parametrize("event", ["warned", "rescan-requested", "pending"])
def test_other_bus_events_are_not_sent(event: str) -> None:
    assert to_cloud_event(change(event), "registry-gatekeeper") is None


def test_settings_know_every_event_type_the_bus_maps_to() -> None:
    assert set(EVENT_TYPES.values()) == set(WEBHOOK_EVENT_TYPES)


def test_each_event_gets_its_own_id() -> None:
    first, second = (to_cloud_event(change(), "x") for _ in range(2))
    assert first is not None and second is not None and first.id != second.id


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"specversion":"1.0"}'
    expected = hmac.new(SECRET, b"1717243200." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1717243200, body) == f"sha256={expected}"


def test_verify_signature_refuses_tampering_and_stale_timestamps() -> None:
    body = b'{"a":1}'
    sig = signature(SECRET, 1000, body)
    assert verify_signature(SECRET, "1000", body, sig, now=1100)
    assert not verify_signature(SECRET, "1000", body + b" ", sig, now=1100)
    assert not verify_signature(SECRET, "1001", body, sig, now=1100)
    assert not verify_signature(b"another-secret-key", "1000", body, sig, now=1100)
    assert not verify_signature(SECRET, "1000", body, sig, now=1000 + 301)
    assert not verify_signature(SECRET, "-1000", body, sig, now=1100)


def test_request_headers() -> None:
    body = b'{"x":1}'
    headers = request_headers(SECRET, body, 42, "image.passed", now=1717243200.9)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["X-Gatekeeper-Delivery"] == "42"
    assert headers["X-Gatekeeper-Event"] == "image.passed"
    assert headers["X-Gatekeeper-Timestamp"] == "1717243200"
    assert headers["X-Gatekeeper-Signature"] == signature(SECRET, 1717243200, body)
    assert not any(SECRET.decode() in value for value in headers.values())


def test_retry_delay_doubles_and_is_capped() -> None:
    assert [retry_delay(1.0, n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [retry_delay(0.2, n) for n in (1, 2)] == [0.2, 0.4]
    assert retry_delay(1.0, 40) == 3600


def test_hook_label_hides_path_query_and_credentials() -> None:
    hook = Hook.of(
        WebhookSettings(
            url="https://user:pw@hooks.example.com/services/T0/B0/tok?key=abc",  # type: ignore[arg-type]
            secret=SECRET.decode(),  # type: ignore[arg-type]
        )
    )
    assert hook.label == "https://hooks.example.com"
    assert hook.key == webhook_key("https://user:pw@hooks.example.com/services/T0/B0/tok?key=abc")
    assert len(hook.key) == 32
    local = Hook.of(WebhookSettings(url="http://127.0.0.1:8080/x", secret=SECRET.decode()))  # type: ignore[arg-type]
    assert local.label == "http://127.0.0.1:8080"


# -- settings -----------------------------------------------------------------------------


def hooks_env(*hooks: dict[str, object]) -> dict[str, str]:
    return {"GATEKEEPER_WEBHOOKS": json.dumps(list(hooks))}


def test_webhooks_from_the_environment_with_defaults() -> None:
    settings = load_settings(
        env=hooks_env({"url": "https://hooks.example.com/in", "secret": SECRET.decode()})
    )
    (hook,) = settings.webhooks
    assert str(hook.url) == "https://hooks.example.com/in"
    assert hook.secret.get_secret_value() == SECRET.decode()
    assert hook.events == list(WEBHOOK_EVENT_TYPES)
    assert (hook.max_attempts, hook.retry_base_seconds) == (8, 1.0)
    assert SECRET.decode() not in repr(settings)
    assert SECRET.decode() not in settings.model_dump_json()


def test_no_webhooks_by_default() -> None:
    assert load_settings(env={}).webhooks == []


@pytest.mark.parametrize(
    ("hook", "field"),
    [
        ({"url": "ftp://hooks.example.com", "secret": "s" * 16}, "webhooks.0.url"),
        ({"url": "https://h.example.com", "secret": "short"}, "webhooks.0.secret"),
        ({"url": "https://h.example.com"}, "webhooks.0.secret"),
        (
            {"url": "https://h.example.com", "secret": "s" * 16, "events": ["image.pushed"]},
            "events",
        ),
        ({"url": "https://h.example.com", "secret": "s" * 16, "events": []}, "events"),
        ({"url": "https://h.example.com", "secret": "s" * 16, "max_attempts": 0}, "max_attempts"),
        ({"url": "https://h.example.com", "secret": "s" * 16, "colour": "red"}, "colour"),
    ],
)
def test_bad_webhooks_name_the_field(hook: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env=hooks_env(hook))
    assert field in str(exc.value)


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env=hooks_env({"url": "https://h.example.com", "secret": "tooshort!"}))
    assert "tooshort!" not in str(exc.value)
    assert "tooshort!" not in str(exc.value.__cause__)


def test_each_url_only_once() -> None:
    hook: dict[str, object] = {"url": "https://h.example.com/in", "secret": "s" * 16}
    with pytest.raises(ConfigError, match=r"webhooks: .*only once"):
        load_settings(env=hooks_env(hook, {**hook, "events": ["image.passed"]}))
