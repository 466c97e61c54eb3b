"""A set of images, (repository, digest) pairs, as a WHERE clause every backend can index (the
same works for any two-column key, such as an advisory's (ecosystem, name)).

``(repository, digest) IN (VALUES ...)`` is what SQLAlchemy's ``tuple_().in_()`` renders; SQLite
answers it with a full table scan, which turns a batched re-evaluation of 10,000 images into a
scan of millions of package rows per batch. Grouped by repository (``repository = ? AND digest
IN (...)`` joined by OR) it is an index search on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, false, or_


def images_clause(repository: Any, digest: Any, keys: Iterable[tuple[str, str]]) -> Any:
    """``keys`` as a condition on the ``repository`` and ``digest`` columns (false if empty)."""
    by_repository: dict[str, set[str]] = {}
    for name, value in keys:
        by_repository.setdefault(name, set()).add(value)
    if not by_repository:
        return false()
    return or_(
        *(
            and_(repository == name, digest.in_(sorted(values)))
            for name, values in sorted(by_repository.items())
        )
    )
