"""Storage's own errors, raised where a database failure enters the code base.

Callers used to catch ``OSError`` as "the database failed", because a refused or dropped
connection can reach them as a bare ``OSError`` from the driver (asyncpg's connect). That also
caught every other ``OSError`` of a request: a client hanging up mid-download
(``ConnectionError("Connection lost")``) became "the gatekeeper's database is unavailable".
So the engine translates (``storage.db``'s ``handle_error`` hook) and nothing above storage
needs to know what a driver raises::

    StorageError
     +-- DatabaseUnavailable   down, unreachable, connection lost, locked, disk full

SQLAlchemy's own errors for statements the database refused on their merits (a unique key
taken: ``IntegrityError``) stay what they are: callers that race on a key catch those by name.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of the errors ``storage`` raises for a failing database."""


class DatabaseUnavailable(StorageError):
    """The database could not run a statement: it is down or unreachable, the connection was
    lost, it is locked past the busy timeout, or its disk is full. Retrying later may work.
    The message is the driver's, so an operator can tell which."""
