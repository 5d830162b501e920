"""Turning Neutron list filters into WHERE clauses, and the rest into a predicate.

A filter is attribute -> list of values (repeated query parameters OR together).
Attributes backed by a column become `column IN (...)`; any other attribute is
matched on the rendered resource, so every attribute is filterable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select

Filters = Mapping[str, list[Any]]
ColumnMap = Mapping[str, ColumnElement[Any]]


def where(stmt: Select[Any], columns: ColumnMap, filters: Filters,
          to_db: Mapping[str, Callable[[Any], Any]] | None = None) -> tuple[Select[Any], Filters]:
    rest: dict[str, list[Any]] = {}
    for attribute, values in filters.items():
        column = columns.get(attribute)
        if column is None:
            rest[attribute] = values
            continue
        if to_db and attribute in to_db:
            values = [to_db[attribute](v) for v in values]
        if None in values:
            others = [v for v in values if v is not None]
            stmt = stmt.where(column.is_(None) | column.in_(others))
        else:
            stmt = stmt.where(column.in_(values))
    return stmt, rest


def matches(resource: Mapping[str, Any], filters: Filters) -> bool:
    for attribute, values in filters.items():
        if attribute not in resource:
            continue  # Neutron ignores filters on unknown attributes
        actual = resource[attribute]
        if isinstance(actual, list):
            if not any(v in actual for v in values):
                return False
        elif actual not in values:
            return False
    return True
