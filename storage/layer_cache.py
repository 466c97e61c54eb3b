"""The per-layer result cache behind ``verifiers.layers.LayerCache``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage.models import LayerResult
from storage.timeutil import now


class DbLayerCache:
    """Results keyed by (layer digest, verifier, version); first writer wins."""

    def __init__(self, db: async_sessionmaker[Any]) -> None:
        self._db = db

    async def get(self, layer_digest: str, verifier: str, version: str) -> dict[str, Any] | None:
        async with self._db() as session:
            row = await session.get(LayerResult, (layer_digest, verifier, version))
            return dict(row.outcome) if row else None

    async def put(
        self, layer_digest: str, verifier: str, version: str, outcome: dict[str, Any]
    ) -> None:
        try:
            async with self._db() as session, session.begin():
                session.add(
                    LayerResult(
                        layer_digest=layer_digest,
                        verifier=verifier,
                        version=version,
                        outcome=outcome,
                        created_at=now(),
                    )
                )
        except IntegrityError:
            pass  # another worker stored the same layer's result first
