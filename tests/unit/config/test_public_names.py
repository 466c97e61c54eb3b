"""Which registry host names a signature's ``docker-reference`` may carry
(``config/public_names.py``) and how a reference is split (``verifiers/registry_names.py``)."""

from __future__ import annotations

import pytest

from config.public_names import public_hosts
from config.settings import ConfigError, load_settings
from verifiers.registry_names import RegistryNames, split_reference


def hosts(**env: str) -> list[str]:
    settings = load_settings(env={f"GATEKEEPER_{k.upper()}": v for k, v in env.items()})
    return sorted(public_hosts(settings))


def test_unset_public_url_means_the_listen_address_and_loopback_names() -> None:
    assert hosts(listen="127.0.0.1:5000") == ["127.0.0.1:5000", "[::1]:5000", "localhost:5000"]
    assert hosts(listen="10.0.0.7:5000") == [
        "10.0.0.7:5000",
        "127.0.0.1:5000",
        "[::1]:5000",
        "localhost:5000",
    ]
    # A wildcard is no name anybody signs for; listed names are added, lower-cased.
    assert hosts(listen="0.0.0.0:8443", public_aliases='["Registry.Internal:8443"]') == [
        "127.0.0.1:8443",
        "[::1]:8443",
        "localhost:8443",
        "registry.internal:8443",
    ]
    assert "[::1]:5000" in hosts(listen="[::1]:5000")


def test_public_url_replaces_the_defaults_and_its_default_port_may_be_left_out() -> None:
    assert hosts(public_url="https://Registry.Example.com", public_aliases='["lb.example"]') == [
        "lb.example",
        "registry.example.com",
        "registry.example.com:443",
    ]
    assert hosts(public_url="http://registry.example.com:5000/") == ["registry.example.com:5000"]


@pytest.mark.parametrize("alias", ["https://registry.example.com", "registry/path", "a b", ""])
def test_an_alias_must_be_host_or_host_port(alias: str) -> None:
    with pytest.raises(ConfigError, match="public_aliases"):
        load_settings(env={"GATEKEEPER_PUBLIC_ALIASES": f'["{alias}"]'})


@pytest.mark.parametrize(
    ("reference", "host", "repository"),
    [
        ("registry.example.com/team/app", "registry.example.com", "team/app"),
        ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app"),
        ("localhost/app@sha256:" + "a" * 64, "localhost", "app"),
        ("[::1]:5000/team/app", "[::1]:5000", "team/app"),
        ("Registry/team/app", "registry", "team/app"),  # upper case: a host, as in distribution
        ("team/app", "docker.io", "team/app"),
        ("app:latest", "docker.io", "app"),
    ],
)
def test_references_split_like_distribution_splits_them(
    reference: str, host: str, repository: str
) -> None:
    parts = split_reference(reference)
    assert (parts.host, parts.repository) == (host, repository)


def test_docker_hub_has_several_names() -> None:
    hub = RegistryNames.of(["docker.io"])
    assert hub.names("index.docker.io") and hub.names("DOCKER.IO")
    assert not RegistryNames.of(["registry.example.com"]).names("docker.io")
    assert RegistryNames.of([]).describe() == "no name (none configured)"
