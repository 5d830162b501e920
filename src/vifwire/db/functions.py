"""SQL functions whose spelling differs by dialect, rendered whole at compile time
so that a prebuilt statement (`vifwire.db.fast`) can run them (SQLAlchemy's own
`aggregate_strings` binds its separator at execution, which `Fast` cannot).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

SEPARATOR = ","  # what `joined` puts between values: in no IPv4 or IPv6 address


class joined(FunctionElement[str]):  # lower case: a SQL function, named as one
    """An aggregate: the group's non-NULL values of one column in one string,
    separated by SEPARATOR, in no particular order."""

    type = String()
    name = "joined"
    inherit_cache = True


@compiles(joined)
def _group_concat(element: joined, compiler: Any, **kw: Any) -> str:
    # SQLite, MySQL and MariaDB: a comma is GROUP_CONCAT's default separator.
    return f"group_concat({compiler.process(element.clauses, **kw)})"


@compiles(joined, "postgresql")
def _string_agg(element: joined, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, '{SEPARATOR}')"
