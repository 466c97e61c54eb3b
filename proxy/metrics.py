"""Prometheus metrics, kept in a per-app registry so several apps (tests) never share counters.

Under ``gatekeeper serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set by the parent before
the library is imported) every process writes its values to files there and a scrape, whichever
process answers it, sums them all (prometheus-client's multiprocess mode). Gauges read by a
function at scrape time cannot be: only the scraped process would run it, so each process
writes them into its file as requests end (and on a scrape), and the scrape sums the live
processes' (``livesum``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from storage.audit import AccessRecord

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
"""Seconds: from a cached HEAD (a millisecond) to a large blob over a slow link (minutes)."""


class Metrics:
    """Requests by action and status, bytes, latency, and upstream failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._read: list[tuple[Gauge, Callable[[], int]]] = []
        self._requests()
        self._audit()
        self._background()
        self._connections()

    def _requests(self) -> None:
        self.requests = Counter(
            "gatekeeper_requests",
            "Requests served, by action and status",
            ["action", "status"],
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "gatekeeper_bytes_in", "Request body bytes", ["action"], registry=self.registry
        )
        self.bytes_out = Counter(
            "gatekeeper_bytes_out", "Response body bytes", ["action"], registry=self.registry
        )
        self.latency = Histogram(
            "gatekeeper_request_duration_seconds",
            "Time from request to last byte, by action",
            ["action"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.upstream_errors = Counter(
            "gatekeeper_upstream_errors",
            "Requests the upstream failed (unreachable, 5xx, aborted mid-body)",
            ["action"],
            registry=self.registry,
        )

    def _audit(self) -> None:
        self.audit_backlog_failures = Counter(
            "gatekeeper_audit_write_failures",
            "Failed attempts to write access-log batches (rows are kept and retried)",
            registry=self.registry,
        )
        self.audit_buffered = Gauge(
            "gatekeeper_audit_buffered_rows",
            "Access-log rows waiting in memory to be written",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.audit_buffer_limit = Gauge(
            "gatekeeper_audit_buffer_limit_rows",
            "Waiting rows at which new requests are refused (audit.max_buffered)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.audit_refused = Counter(
            "gatekeeper_audit_refused_requests",
            "Requests refused with 503 because the access-log buffer was full",
            registry=self.registry,
        )

    def _background(self) -> None:
        self.advisory_syncs = Counter(
            "gatekeeper_advisory_syncs",
            "Advisory mirror syncs by result (imported, not-modified, failed)",
            ["result"],
            registry=self.registry,
        )
        self.verifications_incomplete = Counter(
            "gatekeeper_verifications_incomplete",
            "Images whose verification could not complete (dead-lettered after every attempt) "
            "and that got a failure verdict saying why, by this replica",
            registry=self.registry,
        )
        self.rescan_queued = Counter(
            "gatekeeper_rescan_images_queued",
            "Images queued for verification by re-verification runs of this replica",
            registry=self.registry,
        )
        self.remote_failures = Counter(
            "gatekeeper_remote_fetch_failures",
            "Pulls the registry could not serve because the remote serving the repository "
            "could not (down, rate-limited, failing), by remote and what it said",
            ["remote", "status"],
            registry=self.registry,
        )
        self.prefetched = Counter(
            "gatekeeper_prefetched_images",
            "Images fetched and queued for verification ahead of any pull (prefetch), by result",
            ["result"],
            registry=self.registry,
        )

    def _connections(self) -> None:
        self.connections_refused = Counter(
            "gatekeeper_connections_refused",
            "Client connections refused at once, by the limit reached (per-address, total)",
            ["limit"],
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "gatekeeper_request_header_timeouts",
            "Requests whose line and headers did not arrive within the request-header timeout",
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "gatekeeper_open_connections",
            "Client connections open now (counted against connections.max_total)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def watch_connections(self, open_connections: Callable[[], int]) -> None:
        """Report the open client connections, read when metrics are scraped."""
        self._watch(self.open_connections, open_connections)

    def watch_audit(self, backlog: Callable[[], int], limit: int) -> None:
        """Report the access-log buffer's fill, read when metrics are scraped."""
        self._watch(self.audit_buffered, backlog)
        self.audit_buffer_limit.set(limit)

    def _watch(self, gauge: Gauge, read: Callable[[], int]) -> None:
        if self._shared:
            self._read.append((gauge, read))
        else:
            gauge.set_function(read)

    def _refresh(self) -> None:
        for gauge, read in self._read:
            gauge.set(read())

    def observe(self, record: AccessRecord) -> None:
        self._refresh()
        self.requests.labels(record.action, str(record.status)).inc()
        self.bytes_in.labels(record.action).inc(record.bytes_in)
        self.bytes_out.labels(record.action).inc(record.bytes_out)
        self.latency.labels(record.action).observe(record.duration_ms / 1000)
        upstream_failed = record.upstream_status is not None and record.upstream_status >= 500
        if upstream_failed or record.error_code == "UNAVAILABLE":
            self.upstream_errors.labels(record.action).inc()

    def render(self) -> bytes:
        if not self._shared:
            return generate_latest(self.registry)
        self._refresh()
        every = CollectorRegistry()
        MultiProcessCollector(every)  # type: ignore[no-untyped-call]
        return generate_latest(every)
