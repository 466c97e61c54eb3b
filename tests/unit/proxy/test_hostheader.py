"""``Host`` headers the gatekeeper may write into URLs, and quoting in challenges
(``proxy/hostheader.py``)."""

from __future__ import annotations

import logging

import pytest

from config.settings import load_settings
from proxy.hostheader import quoted, valid_host, warn_if_host_derived


@pytest.mark.parametrize(
    "host",
    [
        "registry.example.com",
        "registry.example.com.",
        "Registry.Example.com:5000",
        "localhost",
        "127.0.0.1:5000",
        "[::1]",
        "[::1]:443",
        "[2001:db8::17]:65535",
        "my_host-1.internal",
        "a" * 63 + ".example",
    ],
)
def test_valid_hosts(host: str) -> None:
    assert valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        'evil.example"/,x="y',
        "evil.example/",
        "evil.example:65536",
        "evil.example:0",
        "evil.example:-1",
        "evil.example: 80",
        ":80",
        "[::1]80",
        "[::g]",
        "[]",
        "::1",
        "evil..example",
        ".evil.example",
        "-evil.example",
        "a" * 64 + ".example",
        "bäd.example",
        "evil.example\r\nX-Injected: 1",
        "x" * 300,
    ],
)
def test_invalid_hosts(host: str) -> None:
    assert not valid_host(host)


def test_quoted_values_cannot_end_their_string() -> None:
    assert quoted('a"b\\c') == 'a\\"b\\\\c'
    assert quoted("line\r\nX: 1") == "line%0D%0AX: 1"
    assert quoted("ä") == "%C3%A4"
    assert quoted("repository:team/app:pull,push repository:x:pull") == (
        "repository:team/app:pull,push repository:x:pull"
    )


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({"GATEKEEPER_LISTEN": "127.0.0.1:5000"}, False),
        ({"GATEKEEPER_LISTEN": "[::1]:5000"}, False),
        ({"GATEKEEPER_LISTEN": "localhost:5000"}, False),
        ({"GATEKEEPER_LISTEN": "0.0.0.0:5000"}, True),
        ({"GATEKEEPER_LISTEN": "10.1.2.3:5000"}, True),
        (
            {"GATEKEEPER_LISTEN": "0.0.0.0:5000", "GATEKEEPER_PUBLIC_URL": "https://r.example"},
            False,
        ),
    ],
)
def test_start_up_warning(
    caplog: pytest.LogCaptureFixture, env: dict[str, str], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="gatekeeper"):
        warn_if_host_derived(load_settings(env=env))
    assert any("public_url is not set" in r.message for r in caplog.records) is warned
