"""A list request's query string: filters, fields, tag filters, sorting and paging.

Neutron's conventions, as its clients rely on them:
- every other parameter is a filter on an attribute; repeated keys OR together
  (`?id=a&id=b`); unknown attributes are a 400 (the `filter-validation`
  extension), typed attributes are converted or a 400; at most
  MAX_FILTER_VALUES values in all (each is a bound SQL parameter);
- `fixed_ips=ip_address=A&fixed_ips=ip_address=B` ORs A and B (as Neutron), and
  ANDs with `fixed_ips=subnet_id=S`;
- `fields` (repeated or comma-separated) selects attributes; unknown ones are
  ignored, like Neutron;
- `tags`, `tags-any`, `not-tags`, `not-tags-any` take comma-separated tags;
- `sort_key`/`sort_dir` are repeated in pairs; `id` is always the last key, so
  the order is total and a marker has exactly one place in it;
- `limit`/`marker`/`page_reverse` page through that order, and the response
  carries `<collection>_links` with `next`/`previous` hrefs.

Sorting and paging run on the rendered, filtered list in memory: the services
stay simple, any attribute (stored or computed) sorts alike, and collections
here are thousands of rows, not millions. Filters still reach SQL where a
column backs the attribute, so the common Nova query (`device_id=`) stays an
index lookup. Ports are the exception, being the collection that grows with
the VMs: a `Resource` with a `pager` (`api/resources.py`) hands the whole query
to its service, which answers it in SQL (`server/port_pages.py`) or returns None
for this path to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import URL

from vifwire.api import converters
from vifwire.api.attributes import Attr
from vifwire.server import faults

PAGING_PARAMS = {"limit", "marker", "sort_key", "sort_dir", "page_reverse", "fields"}
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
INT_RANGE = (-(2**31), 2**31 - 1)
# Filter values in one query: each becomes a bound parameter, and SQLite and
# PostgreSQL cap those (32766, 65535). Neutron's own cap is its 16 KB request line
# (about 400 UUIDs); this one is clearer and still far above what Nova sends.
MAX_FILTER_VALUES = 2000


@dataclass
class ListQuery:
    filters: dict[str, list[Any]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    tag_filters: dict[str, set[str]] = field(default_factory=dict)
    sorts: list[tuple[str, bool]] = field(default_factory=list)  # (key, ascending)
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False


def _bad(message: str) -> faults.BadRequest:
    return faults.BadRequest(message)


def _filter_value(name: str, attr: Attr, value: str) -> Any:
    types = attr.types
    try:
        if "boolean" in types:
            return converters.boolean(value)
        if attr.convert is converters.mac:  # stored lower case, like Neutron's filter
            return value.lower()
        if "integer" in types or attr.schema.get("enum") == [4, 6]:
            number = converters.integer_text(value)
            if not INT_RANGE[0] <= number <= INT_RANGE[1]:
                raise ValueError(f"'{value}' is out of range")
            return number
    except ValueError as exc:
        raise _bad(f"Invalid input for {name}. Reason: {exc}.") from None
    return value


def _tags(values: list[str]) -> set[str]:
    return {t for v in values for t in v.split(",") if t}


def parse(spec: Mapping[str, Attr], params: list[tuple[str, str]]) -> ListQuery:
    """Query string pairs -> ListQuery, or a Neutron 400 naming the bad parameter."""
    query = ListQuery()
    grouped: dict[str, list[str]] = {}
    count = 0
    for key, value in params:
        if "\x00" in key or "\x00" in value:
            raise _bad("NUL characters are not allowed in query parameters")
        grouped.setdefault(key, []).append(value)
    for key, values in grouped.items():
        if key == "fields":
            query.fields = [f for v in values for f in v.split(",") if f]
        elif key in TAG_FILTERS:
            query.tag_filters[key] = _tags(values)
        elif key in PAGING_PARAMS:
            continue
        elif key in spec:
            query.filters[key] = [_filter_value(key, spec[key], v) for v in values]
            count += len(values)
        else:
            raise _bad(f"[{key}] is invalid attribute for filtering")
    if count > MAX_FILTER_VALUES:
        raise _bad(f"Too many filter values: {count}; at most {MAX_FILTER_VALUES} in one "
                   "request")
    query.sorts = _sorts(spec, grouped.get("sort_key", []), grouped.get("sort_dir", []))
    query.limit = _limit(grouped.get("limit", []))
    markers = grouped.get("marker", [])
    query.marker = markers[-1] if markers and query.limit else None
    reverse = grouped.get("page_reverse", [])
    if reverse:
        try:
            query.page_reverse = converters.boolean(reverse[-1])
        except ValueError as exc:
            raise _bad(f"Invalid input for page_reverse. Reason: {exc}.") from None
    return query


def _sorts(spec: Mapping[str, Attr], keys: list[str], dirs: list[str]) -> list[tuple[str, bool]]:
    if dirs and len(dirs) != len(keys):
        raise _bad("The number of sort_keys and sort_dirs must be same")
    absent = [k for k in keys if k not in spec or not spec[k].sortable]
    if absent:
        raise _bad(f"{absent} is invalid attribute for sort_keys")
    invalid = [d for d in dirs if d not in ("asc", "desc")]
    if invalid:
        raise _bad(f"{invalid} is invalid value for sort_dirs, valid value is 'asc' and 'desc'")
    return list(zip(keys, [d == "asc" for d in dirs] if dirs else [True] * len(keys),
                    strict=True))


def _limit(values: list[str]) -> int | None:
    if not values:
        return None
    raw = values[-1]
    try:
        limit = converters.integer_text(raw)
        if limit < 0:
            raise ValueError
    except ValueError:
        raise _bad(f"Limit must be an integer 0 or larger and not '{raw}'") from None
    return limit or None


def tags_match(tags: list[str], wanted: Mapping[str, set[str]]) -> bool:
    have = set(tags)
    return not (("tags" in wanted and not wanted["tags"] <= have)
                or ("tags-any" in wanted and not wanted["tags-any"] & have)
                or ("not-tags" in wanted and wanted["not-tags"] and wanted["not-tags"] <= have)
                or ("not-tags-any" in wanted and wanted["not-tags-any"] & have))


def _sort_value(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def sort(items: list[dict[str, Any]], sorts: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort, `id` last; None sorts before any value."""
    keys = [*sorts, ("id", sorts[-1][1] if sorts else True)] if sorts else [("id", True)]
    ordered = list(items)
    for key, ascending in reversed(keys):
        def by(item: dict[str, Any], key: str = key) -> tuple[int, Any]:
            return _sort_value(item.get(key))
        ordered.sort(key=by, reverse=not ascending)
    return ordered


def page(items: list[dict[str, Any]], query: ListQuery,
         find: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The page of sorted `items` after (or, reversed, before) the marker.

    The marker may be filtered out of `items`; `find` fetches it (a 404 when it
    does not exist, like Neutron) and it is placed by its own sort values.
    """
    if query.limit is None:
        return items
    if query.marker is None:
        return items[-query.limit:] if query.page_reverse else items[:query.limit]
    marker = next((i for i in items if i["id"] == query.marker), None) or find(query.marker)
    ordered = sort([i for i in items if i["id"] != query.marker] + [marker], query.sorts)
    at = next(n for n, i in enumerate(ordered) if i["id"] == query.marker)
    if query.page_reverse:
        return ordered[max(0, at - query.limit):at]
    return ordered[at + 1:at + 1 + query.limit]


def links(url: URL, items: list[dict[str, Any]], query: ListQuery) -> list[dict[str, str]]:
    """Neutron's `<collection>_links` for a page of `items` (before field selection)."""
    if query.limit is None or not items:
        return []
    found: list[dict[str, str]] = []
    params = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True)
              if k not in ("marker", "page_reverse")]
    full = len(items) >= query.limit
    if full or query.page_reverse:
        href = url.replace(query=urlencode([*params, ("marker", items[-1]["id"])]))
        found.append({"rel": "next", "href": str(href)})
    if (full or not query.page_reverse) and query.marker:
        href = url.replace(query=urlencode([*params, ("marker", items[0]["id"]),
                                            ("page_reverse", "True")]))
        found.append({"rel": "previous", "href": str(href)})
    return found
