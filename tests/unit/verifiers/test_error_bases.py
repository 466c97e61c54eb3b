"""Each verifier component has its own error base, and every one is a ``VerifierError``
(STYLE.md: "each component has its own error base; library errors are wrapped at the
boundary"), so "a verifier refused on purpose" is one ``except`` for the pipeline and the
verification service."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import verifiers
from verifiers.base import VerifierError
from verifiers.scan.errors import ScanError
from verifiers.signatures.errors import SignatureError
from verifiers.vulns.errors import VulnsError

BASES = {"verifiers.scan": ScanError, "verifiers.vulns": VulnsError}
BASES["verifiers.signatures"] = SignatureError
CONTROL_FLOW = {"verifiers.scan.bridge.Stopped", "verifiers.scan.ecosystems.golang_stream._Reject"}
"""Not errors: the thread's signal that the async side gave up, and a private early exit."""


def _exceptions() -> list[tuple[str, type[BaseException]]]:
    found = []
    for info in pkgutil.walk_packages(verifiers.__path__, "verifiers."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.append((f"{info.name}.{value.__qualname__}", value))
    return found


def test_every_verifier_error_is_a_verifier_error() -> None:
    strays = [
        name
        for name, cls in _exceptions()
        if name not in CONTROL_FLOW and not issubclass(cls, VerifierError)
    ]
    assert strays == []


@pytest.mark.parametrize("package", sorted(BASES))
def test_each_component_raises_under_its_own_base(package: str) -> None:
    mine = [(n, c) for n, c in _exceptions() if n.startswith(package + ".")]
    assert mine, package
    strays = [n for n, c in mine if n not in CONTROL_FLOW and not issubclass(c, BASES[package])]
    assert strays == []


def test_value_errors_stay_value_errors() -> None:
    """Callers that caught a parser's ``ValueError`` before still do."""
    from verifiers.signatures.keys import KeyFormatError
    from verifiers.vulns.osv import OsvError

    assert issubclass(OsvError, ValueError) and issubclass(KeyFormatError, ValueError)
