"""``services.advisory_import``: an OSV source read in a worker thread and stored batch by batch,
each rejected record reported as it is met, nothing stored when the source fails as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services import advisory_import
from services.advisory_import import import_path
from storage.advisories import DbAdvisoryStore
from tests.support.osvdata import BAD_RECORDS, real, write_bad_records
from verifiers.vulns.load import Loaded, LoadError, ReadLimits, Rejected
from verifiers.vulns.osv import Advisory

pytestmark = pytest.mark.testdata


async def test_bad_records_are_reported_and_the_rest_stored(db: Any, tmp_path: Path) -> None:
    for name in ("PYSEC-2023-117", "PYSEC-2023-135"):
        (tmp_path / f"{name}.json").write_bytes(real(f"pypi/{name}.json"))
    write_bad_records(tmp_path / "bad")
    met: list[Rejected] = []
    imported = await import_path(db, tmp_path, ReadLimits(), source="t", on_reject=met.append)
    assert (imported.result.added, imported.rejected) == (2, len(BAD_RECORDS))
    assert sorted(Path(r.where).stem for r in met) == sorted(BAD_RECORDS)
    assert imported.result.advisories == {"PYSEC-2023-117", "PYSEC-2023-135"}


async def test_a_source_without_a_valid_record_stores_nothing(db: Any, tmp_path: Path) -> None:
    write_bad_records(tmp_path)
    before = await DbAdvisoryStore(db).data_version()
    rejected = len(BAD_RECORDS)
    with pytest.raises(LoadError, match=rf"no valid OSV record in it \({rejected} rejected\)"):
        await import_path(db, tmp_path, ReadLimits(), source="t", on_reject=lambda r: None)
    assert await DbAdvisoryStore(db).data_version() == before  # no empty data version


async def test_a_source_over_the_total_cap_stores_nothing(db: Any, tmp_path: Path) -> None:
    for name in ("PYSEC-2023-117", "PYSEC-2023-135", "PYSEC-2023-192"):
        (tmp_path / f"{name}.json").write_bytes(real(f"pypi/{name}.json"))
    limits = ReadLimits(max_record_bytes=8192, max_uncompressed_bytes=5000)
    with pytest.raises(LoadError, match="max_uncompressed_bytes"):
        await import_path(db, tmp_path, limits, source="t", on_reject=lambda r: None)
    assert await DbAdvisoryStore(db).data_version() == 0


def test_a_batch_is_bounded_by_records_and_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    advisory = Advisory.from_json({"id": "X-1"})
    monkeypatch.setattr(advisory_import, "BATCH_RECORDS", 3)
    monkeypatch.setattr(advisory_import, "BATCH_BYTES", 1000)
    small = iter([Loaded(advisory, "w", 10)] * 7 + [Rejected("r", "bad")] * 2)
    sizes = []
    while batch := advisory_import._next_batch(small):
        if not batch[0] and not batch[1]:
            break
        sizes.append((len(batch[0]), len(batch[1])))
    assert sizes == [(3, 0), (3, 0), (1, 2)]
    large = iter([Loaded(advisory, "w", 600)] * 3)
    assert len(advisory_import._next_batch(large)[0]) == 2  # 1,200 bytes: the batch is full
