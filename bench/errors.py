"""Errors of the benchmark harness, one base so the entry points can report them uniformly.

A target that cannot start or a measurement that fails is turned into a value (a skip or a
failure recorded in the results) where it happens; these exceptions only carry the diagnosis
there, with the offending status or log excerpt in the message.
"""

from __future__ import annotations


class BenchError(Exception):
    """Base for every failure the harness itself diagnoses."""


class TargetUnavailable(BenchError):
    """A target (nginx, a gatekeeper) could not be started; its rows are skipped, not zero."""


class MeasurementError(BenchError):
    """One measurement against a running target failed: bad status, short body, leaked URL."""
