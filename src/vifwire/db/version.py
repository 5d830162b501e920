"""Which schema revision a database is at, against the one this code needs.

`vifwire server` refuses a database whose revision is not the head (its
operator runs `vifwire db upgrade`, as with `neutron-db-manage upgrade`); the
embedded stack upgrades its own SQLite file by itself (`engine.migrate`).
"""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from vifwire.db.engine import alembic_config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory has no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
