"""What the API needs from the services: the typed interface it calls, nothing more.

The API reaches the server only through these Protocols (and raises and maps the
server's faults). `vifwire.app` hands it an object that satisfies `ApiServices`
(the server's `Services`, checked by mypy there), so the API imports no service
module and, through them, no database code.

The sync-or-async shape is fixed per method, never inspected at run time:
reads are plain calls (one short transaction on the loop), writes are awaited
(a port write casts to its agent after the commit). Every rendered item of a
taggable collection carries its `tags`.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Item = dict[str, Any]
# attribute -> the values any of which it may have (as `vifwire.server._query.Filters`).
Filters = Mapping[str, builtins.list[Any]]


class ResourceService(Protocol):
    """One collection: show, list, update and delete."""

    def show(self, item_id: str) -> Item: ...

    def list(self, filters: Filters, visible_to: str | None = None) -> builtins.list[Item]:
        """`visible_to`: a non-admin's project, whose view the list is limited to in SQL
        (`vifwire.server.visibility`); None: every project's."""
        ...

    async def update(self, item_id: str, changes: Item,
                     if_revision: int | None) -> Item: ...

    async def delete(self, item_id: str) -> None: ...


class CreatableService(ResourceService, Protocol):
    """A collection clients can also POST to (all-or-nothing for a bulk create)."""

    async def create(self, bodies: builtins.list[Item]) -> builtins.list[Item]: ...


class PagedService(CreatableService, Protocol):
    """A collection whose service answers a whole list query (filters, fields, sort,
    limit and marker) itself, or None when the API's in-memory listing must."""

    def page(self, filters: Filters, *, fields: Sequence[str],
             sorts: Sequence[tuple[str, bool]], limit: int | None, marker: str | None,
             page_reverse: bool) -> builtins.list[Item] | None: ...


class TagsService(Protocol):
    """The tags of one resource of a taggable collection; each call is one transaction
    (reads synchronous, writes awaited)."""

    def get(self, collection: str, resource_id: str) -> builtins.list[str]: ...

    def has(self, collection: str, resource_id: str, tag: str) -> None: ...

    async def replace(self, collection: str, resource_id: str,
                      new: builtins.list[str]) -> builtins.list[str]: ...

    async def add(self, collection: str, resource_id: str, tag: str) -> None: ...

    async def remove(self, collection: str, resource_id: str, tag: str) -> None: ...

    async def clear(self, collection: str, resource_id: str) -> None: ...


class QuotasService(Protocol):
    """Per-project limits (reads synchronous, writes awaited)."""

    def list(self) -> builtins.list[Item]: ...

    def show(self, project_id: str) -> Item: ...

    def default(self, project_id: str) -> Item: ...

    def details(self, project_id: str) -> Item: ...

    async def update(self, project_id: str, body: Item) -> Item: ...

    async def reset(self, project_id: str) -> None: ...


class ReadService(Protocol):
    """A read-only collection computed by the server (network IP availabilities)."""

    def show(self, item_id: str) -> Item: ...

    def list(self, filters: Filters) -> builtins.list[Item]: ...


class ApiServices(Protocol):
    """Everything the API calls, found on `app.state.services`."""

    @property
    def networks(self) -> CreatableService: ...

    @property
    def subnets(self) -> CreatableService: ...

    @property
    def ports(self) -> PagedService: ...

    @property
    def agents(self) -> ResourceService: ...

    @property
    def security_groups(self) -> CreatableService: ...

    @property
    def security_group_rules(self) -> CreatableService: ...

    @property
    def tags(self) -> TagsService: ...

    @property
    def quotas(self) -> QuotasService: ...

    @property
    def subnetpools(self) -> CreatableService: ...

    @property
    def ip_availabilities(self) -> ReadService: ...

    async def ensure_default_security_group(self, project_id: str) -> None:
        """Make the project's `default` security group if it has none yet."""

