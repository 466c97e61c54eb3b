"""Verifiers by name, built from settings. Built-ins are listed here; anything else comes from
a ``plugin = "module:Class"`` setting (third-party checks, the tests' fakes)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from config.settings import VerifierSettings
from verifiers.base import Verifier, VerifierError
from verifiers.layers import LayerCache, PerLayer
from verifiers.registry_names import KnowsRegistry, RegistryNames
from verifiers.scan.sink import InventorySink
from verifiers.stores import Stores, UsesStores
from verifiers.vulns.source import AdvisorySource

# Imported only when enabled: the signature verifier alone pulls in the sigstore stack
# (tens of MiB of resident memory a gatekeeper without signature checks should not carry).
BUILTINS: dict[str, str] = {
    "config-sanity": "verifiers.config_sanity:ConfigSanity",
    "hardening": "verifiers.content.hardening:HardeningVerifier",
    "inventory": "verifiers.scan.verifier:InventoryVerifier",
    "malware": "verifiers.content.malware:MalwareVerifier",
    "secrets": "verifiers.content.secrets:SecretsVerifier",
    "signatures": "verifiers.signatures:SignatureVerifier",
    "vulnerabilities": "verifiers.vulns.verifier:VulnerabilityVerifier",
}


class VerifierConfigError(VerifierError, ValueError):
    """A verifier named in settings cannot be built; the message names it."""


def _load(path: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise VerifierConfigError(f"plugin {path!r} must look like 'module:Class'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise VerifierConfigError(f"plugin {path!r} cannot be loaded: {exc}") from exc
    if not callable(factory):
        raise VerifierConfigError(f"plugin {path!r} is not callable")
    return factory  # type: ignore[no-any-return]


def build_verifiers(
    configured: Mapping[str, VerifierSettings],
    cache: LayerCache,
    inventory: InventorySink | None = None,
    advisories: AdvisorySource | None = None,
    registry: RegistryNames | None = None,
) -> list[Verifier]:
    """Instances of every enabled verifier, named as in settings, with storage ports attached
    to those that use them, and the registry's names (``config/public_names.py``) to those that
    need them (without: none, so a signature naming a registry host cannot count)."""
    stores = Stores(layer_cache=cache, inventory=inventory, advisories=advisories)
    built: list[Verifier] = []
    for name, settings in configured.items():
        if not settings.enabled:
            continue
        path = settings.plugin or BUILTINS.get(name)
        if path is None:
            known = ", ".join(sorted(BUILTINS))
            raise VerifierConfigError(
                f"verifiers.{name}: unknown verifier (built in: {known}; or set plugin)"
            )
        factory = _load(path)
        try:
            instance = factory(dict(settings.options))
        except ValueError as exc:  # option validation (pydantic errors are ValueErrors)
            lines = str(exc).splitlines() or [exc.__class__.__name__]
            raise VerifierConfigError(
                "\n".join(f"verifiers.{name}.options.{line}" for line in lines)
            ) from exc
        instance.name = name
        if isinstance(instance, UsesStores):
            instance.attach(stores)
        if registry is not None and isinstance(instance, KnowsRegistry):
            instance.know_registry(registry)
        if hasattr(instance, "verify_layer") and not hasattr(instance, "verify"):
            instance = PerLayer(instance, cache)
        if not isinstance(instance, Verifier):
            raise VerifierConfigError(f"verifiers.{name}: does not implement the protocol")
        built.append(instance)
    return built
