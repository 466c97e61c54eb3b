"""Typed settings for the gatekeeper, read once at start-up from a TOML file and the environment.

Operators and scripts rely on four environment names that must never change:
``GATEKEEPER_UPSTREAM_URL``, ``GATEKEEPER_LISTEN``, ``GATEKEEPER_PUBLIC_URL`` and
``GATEKEEPER_DATABASE_URL``. Every other field follows the same ``GATEKEEPER_<FIELD>`` rule.
Environment variables win over the file, so a container can override one value of a shared file.

Secrets are ``SecretStr``: they never show up in ``repr``, logs or ``check-config`` output.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from config.auth import AuthSettings
from config.policy import Policy
from config.remotes import LOCAL, PrefetchSettings, Remote
from config.scheduling import AdvisoriesSettings, RescanSettings
from config.vouch import AttestationSettings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/gatekeeper.db"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_PORT = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
_INJECTED_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("injected_env", default=None)


class ConfigError(Exception):
    """A settings file or value is unusable; the message names the bad field."""


class AuditSettings(BaseModel):
    """How access-log rows are written: batched off the request path, never dropped silently."""

    model_config = {"extra": "forbid"}

    flush_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    """Longest time a finished request waits before its row is written."""
    batch_size: int = Field(default=500, ge=1, le=100_000)
    """Rows written in one transaction at most."""
    json_log: bool = True
    """Also emit each row as one JSON line on the ``gatekeeper.access`` logger (every line of
    it: requests, verdict changes, refused requests); off: that logger prints nothing."""
    max_buffered: int = Field(default=100_000, ge=1, le=10_000_000)
    """Rows held in memory while the database cannot take them. When this many are waiting,
    new requests are refused with 503 until the database is back: a request is never served
    without its row (rows of requests already in flight are still kept, never dropped)."""
    spool_dir: Path = Path("./var/audit-spool")
    """Where each row is appended before it waits for its batch, and a response's provisional
    row before its first byte is sent: a crash loses no row, and the next start writes what
    the database did not get. Local to the replica (each process has its own files in it, so
    a shared directory works too); it holds only rows not yet committed."""
    spool_sync_seconds: float = Field(default=1.0, ge=0, le=60)
    """How often the spool is flushed to disk (fsync). A crashed process loses no row whatever
    this is (its writes are in the kernel already); a machine that loses power may lose the
    rows of this last stretch. 0: each row is synced before its response is sent (every
    request then waits for the disk)."""
    checkpoint_interval_seconds: float = Field(default=300.0, ge=1, le=7 * 24 * 3600)
    """How often a replica signs a checkpoint of the access log's hash chain (its newest row's
    position and hash), when rows were added since the last one; each replica also signs one
    when it stops. Rows after the last checkpoint are protected by the chain only (whoever
    can write the database could rewrite them all consistently); rows up to it, by the
    gatekeeper's signature too."""


class UploadSettings(BaseModel):
    """Limits on blob upload sessions, so one client cannot exhaust the upstream's."""

    model_config = {"extra": "forbid"}

    max_sessions_per_identity: int = Field(default=100, ge=1, le=100_000)
    """Open upload sessions one identity may hold (anonymous clients: one per client IP);
    the next ``POST /v2/<name>/blobs/uploads/`` is answered 429 TOOMANYREQUESTS."""
    session_idle_seconds: float = Field(default=900.0, gt=0, le=7 * 24 * 3600)
    """A session with no request for this long no longer counts against the limit, and is
    forgotten: only its owner may use a session, so a forgotten one is unknown to everyone."""


class ConnectionSettings(BaseModel):
    """Limits on client connections, so clients that are slow or many cannot take every
    connection the gatekeeper can hold while others wait (slowloris)."""

    model_config = {"extra": "forbid"}

    request_header_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Longest a client may take to send a request line and its headers, counted from the
    connection (or, on a kept-alive connection, from the request's first byte); then it gets
    408 and the connection is closed (like nginx's ``client_header_timeout``)."""
    keepalive_timeout_seconds: float = Field(default=75.0, gt=0, le=3600)
    """A kept-alive connection with no request for this long is closed."""
    max_per_address: int = Field(default=128, ge=1, le=1_000_000)
    """Open connections one client address may hold; the next one is answered 429
    ``TOOMANYREQUESTS`` and closed. Connections from ``trusted_proxies`` carry many clients and
    count only against ``max_total``."""
    max_total: int = Field(default=1024, ge=1, le=1_000_000)
    """Open client connections in all; the next one is answered 503 ``UNAVAILABLE`` and
    closed. Keep it under the process's file limit (``ulimit -n``), which upstream and database
    connections share."""


class ConsoleSettings(BaseModel):
    """The web console under ``/ui/`` (``proxy/ui``): who signs in is the gatekeeper's own users
    with an admin, auditor or quarantine-reader grant; these bound how long a sign-in lasts."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    """Serve the console (it needs ``auth.enabled``: its users are the gatekeeper's)."""
    idle_timeout_seconds: float = Field(default=1800.0, ge=30, le=7 * 24 * 3600)
    """A session unused for this long ends; the next request signs in again."""
    absolute_timeout_seconds: float = Field(default=12 * 3600.0, ge=60, le=30 * 24 * 3600)
    """A session ends this long after sign-in however busy it is."""


class ReplicaSettings(BaseModel):
    """How a replica tells the others it is running (``proxy/presence.py``)."""

    model_config = {"extra": "forbid"}

    heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)
    """How often this replica records that it is alive. One silent for three beats is gone:
    the upload sessions it served stop counting against their owners' caps (a clean stop
    lets them go at once)."""


class VerifierSettings(BaseModel):
    """One verifier: whether it runs, how long it may take, and its own options."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    plugin: str | None = None
    """``module:Class`` of a verifier that is not built in (third-party checks, test fakes)."""
    options: dict[str, Any] = Field(default_factory=dict)


class VerificationSettings(BaseModel):
    """The background workers that run verification jobs."""

    model_config = {"extra": "forbid"}

    workers: int = Field(default=2, ge=0, le=64)
    """Concurrent jobs per gatekeeper process (0: this replica only serves, never verifies)."""
    lease_seconds: float = Field(default=15.0, ge=1, le=3600)
    """A job's lease: its worker renews it every third of this while the job runs, so a job
    whose replica crashed is taken over by another within this long (a clean stop hands its
    jobs back at once). Longer only where the database may be out of reach for longer."""
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    """How often an idle worker looks for jobs anyway. A job queued by any process wakes it
    at once (PostgreSQL ``LISTEN/NOTIFY``, on SQLite a socket per process of the host:
    ``services/wakeups.py``), so this is the safety net (a lost wake-up, a retry due later)."""
    verdict_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    """How long a pullable verdict is reused without asking the database (0: never). Changes
    made by any process that announces them (``services/wakeups.py``) evict it at once; otherwise
    another replica's change is seen within this time."""
    first_pull_hold_seconds: float = Field(default=30.0, ge=0, le=600)
    """Images the gatekeeper never saw pushed are verified on first pull, held this long."""
    keep_finished_jobs_days: float = Field(default=30.0, ge=1, le=36500)
    """How long a finished job (done, dead-lettered, cancelled) is kept before it is deleted,
    so the queue's table stays bounded. Verdicts and their history are never deleted; the dead
    letters the console lists and a rescan run's job counts (``gatekeeper rescan --status``)
    reach back this far."""
    inline_first_pulls: bool = True
    """A first pull under a policy that requires only verifiers reading no layer and no
    referrer (``config-sanity``) is verified by the serving process itself, with the job a
    worker would run, instead of waiting for a worker (``services/inline.py``). False: every
    verification goes through the workers."""


WEBHOOK_EVENT_TYPES = (
    "image.quarantined",
    "image.passed",
    "image.released",
    "image.requarantined",
    "image.new-findings",
)
"""The CloudEvents ``type`` of every verdict change a webhook can subscribe to."""


class WebhookSettings(BaseModel):
    """One receiver of signed CloudEvents on verdict changes (see ``proxy/webhooks``)."""

    model_config = {"extra": "forbid", "hide_input_in_errors": True}

    url: AnyHttpUrl
    """Where events are POSTed; http or https. Logged only as scheme and host, since receivers
    often carry a token in the path or query."""
    secret: SecretStr
    """HMAC-SHA256 key the receiver verifies ``X-Gatekeeper-Signature`` with."""
    events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENT_TYPES), min_length=1)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Whole-request limit of one delivery attempt."""
    max_attempts: int = Field(default=8, ge=1, le=100)
    """Attempts before a delivery is given up as ``failed``."""
    retry_base_seconds: float = Field(default=1.0, gt=0, le=3600)
    """Attempt n+1 waits ``retry_base_seconds * 2**(n-1)`` (at most an hour) after attempt n."""

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown {unknown}; known: {', '.join(WEBHOOK_EVENT_TYPES)}")
        return value


def _default_verifiers() -> dict[str, VerifierSettings]:
    return {"config-sanity": VerifierSettings()}


class Settings(BaseSettings):
    """Everything the gatekeeper needs to run; validated before anything starts."""

    model_config = SettingsConfigDict(
        env_prefix="GATEKEEPER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,  # a rejected value may be a secret (webhook, upstream)
    )

    upstream_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:5001")
    """Base URL of the Distribution registry behind the gatekeeper; never shown to clients."""
    listen: str = "127.0.0.1:5000"
    """``host:port`` the gatekeeper binds to."""
    public_url: AnyHttpUrl | None = None
    """URL clients use to reach the gatekeeper; ``Location`` and ``Link`` headers and the token
    realm are written on it. Unset: derived from each request's ``Host`` (refused unless it is
    ``host[:port]``) and scheme, with a start-up warning off loopback."""
    public_aliases: list[str] = Field(default_factory=list)
    """Other ``host`` or ``host:port`` names clients reach the gatekeeper by (a DNS alias, the
    load balancer's name). With ``public_url`` (or, unset, the listen address and loopback
    names) they are the registry names a cosign signature's ``docker-reference`` may carry
    (``config/public_names.py``)."""
    database_url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy async URL: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``."""

    upstream_username: str | None = None
    upstream_password: SecretStr | None = None
    """Credentials the gatekeeper itself uses upstream (basic, or for the upstream's token server).
    Clients never see them and never send their own upstream."""
    upstream_storage_root: Path | None = None
    """The registry's ``storage.filesystem.rootdirectory`` mounted read-only, so blob GETs that
    pass the gate are served by sendfile instead of being copied through Python, and manifests
    by digest or tag are read from its files (``proxy.registry_files``). Empty means
    unset (a compose override cannot remove a variable): with object storage, leave it so."""
    blob_redirects: Literal["client", "proxy"] = "client"
    """A blob GET or HEAD that passed the gate, when the upstream answers it with a redirect to
    object storage (a registry on S3 with ``redirect`` on): ``client`` passes the redirect on,
    so the bytes go from the object store to the client, which must reach it; ``proxy`` makes
    the gatekeeper follow it and stream the bytes (Range requests too), for networks where
    clients cannot reach the store. Verification reads always follow redirects."""
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    """Connect and header timeout for upstream requests, and for the object storage its
    redirects point at; bodies are streamed without a total limit (a read that stalls for
    longer than this, at least 60 s, fails)."""
    client_body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Longest a client may leave an upload body idle (no byte arriving) before the request is
    answered 408 and the upstream request aborted; bounds slowloris-style uploads, not their
    total duration (like nginx's ``client_body_timeout``)."""

    connections: ConnectionSettings = ConnectionSettings()
    """Request-header timeout, keep-alive timeout and connection caps (``proxy/connections.py``)."""

    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    """Load balancers whose ``X-Forwarded-For`` is believed (``["10.0.0.0/8"]``): requests
    from them are logged, throttled and capped under the client's address, not theirs."""

    tls_cert: Path | None = None
    """PEM certificate chain: with ``tls_key``, the port speaks HTTPS (plain HTTP sent to it
    is answered 400). Blobs then leave the storage path in pieces, not by sendfile: for the
    most throughput terminate TLS at the load balancer (docs/deployment.md)."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""

    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest manifest body accepted on PUT (the spec suggests registries cap at 4 MiB)."""
    max_manifest_layers: int = Field(default=256, ge=1, le=10_000)
    """Most layers an image manifest, or child manifests an index, may list. Every entry is
    indexed and verified, so a push over it is refused (400 ``MANIFEST_INVALID`` naming the
    limit) and an image that reached the registry around the gatekeeper is quarantined when
    it is verified. Docker itself refuses to stack more than 125 layers."""
    log_level: str = "INFO"
    workers: int | None = Field(default=None, ge=1, le=256)
    """Serving processes of ``gatekeeper serve`` on the one port (``--workers`` overrides it);
    unset: one per core this process may use. With more than one, verification runs in a
    process of its own beside them (``proxy/workers.py``); 1 serves and verifies in one
    process."""
    audit: AuditSettings = AuditSettings()
    uploads: UploadSettings = UploadSettings()
    replicas: ReplicaSettings = ReplicaSettings()
    verifiers: dict[str, VerifierSettings] = Field(default_factory=_default_verifiers)
    policies: list[Policy] = Field(default_factory=list)
    """Empty means every repository is unmatched, and an unmatched repository is denied."""
    verification: VerificationSettings = VerificationSettings()
    auth: AuthSettings = AuthSettings()
    admin_token: SecretStr | None = None
    """Break-glass bearer token for the admin API; unset disables token access."""
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    """Receivers of verdict-change events; each URL at most once (deliveries are keyed by it)."""
    rescan: RescanSettings = RescanSettings()
    """Periodic full re-verification, run once cluster-wide (``services/scheduler.py``)."""
    advisories: AdvisoriesSettings = AdvisoriesSettings()
    """Scheduled OSV mirror sync (``services/mirror.py``)."""
    remotes: list[Remote] = Field(default_factory=list)
    """Registries the upstream registry fetches images from on demand (a pull-through cache):
    the origin policies can be chosen by, and whom to name when a fetch fails
    (``config/remotes.py``)."""
    prefetch: PrefetchSettings = PrefetchSettings()
    """Images fetched and verified before the first pull, kept warm by the scheduler."""
    console: ConsoleSettings = ConsoleSettings()
    """The web console (``/ui/``)."""
    attestations: AttestationSettings = AttestationSettings()
    """The gatekeeper's own signing key and the verification summaries it pushes."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, for example 127.0.0.1:5000")
        return value

    @field_validator("upstream_storage_root", mode="before")
    @classmethod
    def _empty_root_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_aliases")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        names = [alias.strip().lower() for alias in value]
        bad = [alias for alias in names if not _HOST_PORT.fullmatch(alias)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not host or host:port (no scheme or path), for example "
                "registry.example.com or registry.internal:5000"
            )
        return names

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("webhooks")
    @classmethod
    def _check_webhook_urls(cls, value: list[WebhookSettings]) -> list[WebhookSettings]:
        urls = [str(hook.url) for hook in value]
        if len(set(urls)) != len(urls):
            raise ValueError("each webhook url may appear only once")
        return value

    @field_validator("remotes")
    @classmethod
    def _check_remote_names(cls, value: list[Remote]) -> list[Remote]:
        names = [remote.name for remote in value]
        if len(set(names)) != len(names):
            raise ValueError("each remote name may appear only once")
        return value

    @model_validator(mode="after")
    def _check_origins(self) -> Self:
        known = [LOCAL, *(remote.name for remote in self.remotes)]
        for index, policy in enumerate(self.policies):
            unknown = [name for name in policy.origins if name not in known]
            if unknown:
                raise ValueError(
                    f"policies.{index}.origins: unknown origin {unknown[0]!r} (known: "
                    f"{', '.join(known)}; a remote is named in [[remotes]])"
                )
        return self

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so it overrides the file, which arrives as init kwargs.
        return _InjectableEnvSource(settings_cls), init_settings


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build settings from an optional TOML file plus the environment.

    ``env`` is injectable so tests never have to touch ``os.environ``.
    Raises ConfigError naming the first bad field.
    """
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        if env is None:
            return Settings(**data)
        return _settings_with_env(data, env)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _settings_with_env(data: dict[str, Any], env: dict[str, str]) -> Settings:
    token = _INJECTED_ENV.set(env)
    try:
        return Settings(**data)
    finally:
        _INJECTED_ENV.reset(token)


class _InjectableEnvSource(EnvSettingsSource):
    """Reads an injected mapping instead of ``os.environ`` when one is set (tests, tools)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        injected = _INJECTED_ENV.get()
        if injected is None:
            return super()._load_env_vars()
        return parse_env_vars(
            injected, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _describe(exc: Any, path: Path | None) -> str:
    where = f"{path}: " if path else ""
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(settings)"
        lines.append(f"{where}{field}: {err['msg']}")
    return "\n".join(lines)
