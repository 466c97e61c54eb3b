"""Typed settings: the four operator-facing names, file + environment, errors naming fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "gatekeeper.example.toml"


def test_the_four_environment_names() -> None:
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": "http://registry:5000",
            "GATEKEEPER_LISTEN": "0.0.0.0:8080",
            "GATEKEEPER_PUBLIC_URL": "https://gate.example.com",
            "GATEKEEPER_DATABASE_URL": "postgresql+asyncpg://u:p@db/gk",
        }
    )
    assert str(settings.upstream_url) == "http://registry:5000/"
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert str(settings.public_url) == "https://gate.example.com/"
    assert settings.database_url.startswith("postgresql+asyncpg://")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('listen = "127.0.0.1:7000"\n[audit]\nbatch_size = 9\n')
    settings = load_settings(path, env={"GATEKEEPER_LISTEN": "127.0.0.1:7001"})
    assert settings.port == 7001
    assert settings.audit.batch_size == 9


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('listen = "nope"', "listen"),
        ("max_manifest_bytes = 1", "max_manifest_bytes"),
        ("max_manifest_layers = 0", "max_manifest_layers"),
        ("max_manifest_layers = 10001", "max_manifest_layers"),
        ('database_url = "mysql://x"', "database_url"),
        ('upstream_url = "ftp://x"', "upstream_url"),
        ('tls_cert = "/c.pem"', "(settings)"),
        ("typo_field = 1", "typo_field"),
        ("[audit]\nflush_interval_seconds = -1", "audit.flush_interval_seconds"),
        (
            '[[policies]]\nname = "p"\nrepositories = ["*"]\n[[policies.waivers]]\n'
            'finding = "CVE-1"\nreason = "all checks \\u202edeliaf"\nauthor = "sec"',
            "policies.0.waivers.0.reason",
        ),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, env={})
    assert f"{path}: {field}:" in str(exc.value)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("= = =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})


def test_secrets_are_not_in_repr() -> None:
    settings = load_settings(env={"GATEKEEPER_UPSTREAM_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


def test_example_config_loads() -> None:
    load_settings(EXAMPLE, env={})


def test_advisory_read_caps_are_typed_and_documented(tmp_path: Path) -> None:
    defaults = load_settings(env={}).advisories
    assert (defaults.download_deadline, defaults.max_record_bytes) == (1800.0, 4 * 1024**2)
    assert defaults.max_uncompressed_bytes == 16 * 1024**3
    # The commented [advisories] block of the example, uncommented, is what the defaults are.
    text = EXAMPLE.read_text()
    block = text[text.index("# [advisories]") : text.index("# --- Verifiers")]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    path = tmp_path / "advisories.toml"
    path.write_text(uncommented)
    example = load_settings(path, env={}).advisories
    assert (example.download_deadline, example.max_record_bytes) == (1800.0, 4 * 1024**2)
    assert example.max_uncompressed_bytes == defaults.max_uncompressed_bytes
    with pytest.raises(ConfigError, match="download_deadline"):
        load_settings(env={"GATEKEEPER_ADVISORIES__DOWNLOAD_DEADLINE": "off"})
    with pytest.raises(ConfigError, match="max_record_bytes"):
        load_settings(env={"GATEKEEPER_ADVISORIES__MAX_RECORD_BYTES": "10"})


def test_an_empty_storage_root_is_unset() -> None:
    """docker-compose.s3.yml empties it: an override file cannot remove a variable."""
    settings = load_settings(env={"GATEKEEPER_UPSTREAM_STORAGE_ROOT": ""})
    assert settings.upstream_storage_root is None
    assert load_settings(env={"GATEKEEPER_BLOB_REDIRECTS": "proxy"}).blob_redirects == "proxy"
    with pytest.raises(ConfigError, match="blob_redirects"):
        load_settings(env={"GATEKEEPER_BLOB_REDIRECTS": "follow"})


def test_the_remotes_example_is_what_the_settings_take(tmp_path: Path) -> None:
    """The commented [[remotes]] block of the example, uncommented, loads with the defaults."""
    text = EXAMPLE.read_text()
    block = text[text.index("# [[remotes]]") : text.index("# Images fetched and verified")]
    lines = [line.removeprefix("# ").split("  #", 1)[0] for line in block.splitlines()]
    path = tmp_path / "remotes.toml"
    path.write_text("\n".join(line for line in lines if line.strip() and line[0] != "#"))
    (remote,) = load_settings(path, env={}).remotes
    assert (remote.name, remote.repositories) == ("docker-hub", ["*"])
    assert (remote.hold_seconds, remote.timeout_seconds) == (300.0, 10.0)
    assert str(remote.url) == "https://registry-1.docker.io/"
    assert remote.password is not None and "access token" not in repr(remote)
