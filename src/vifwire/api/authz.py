"""Neutron's policy applied to the collection routes (`vifwire.server.policy` decides).

What each operation checks, for a context that is not an admin passing every rule:

- list: the service filters rows in SQL (`visible_to`); agents are each checked
  (`get_agent`, admin only: a non-admin sees none); attributes whose `get_<member>:
  <attr>` rule fails (`binding:*`, `provider:*`) are removed from every item.
- show: `get_<member>` on the item, else the resource's own 404 (another project's
  resource is not found, never forbidden); then the attribute removal.
- create: a `project_id` other than the caller's needs admin (400, as Neutron); the
  network (or security group) named must be visible (else its 404);
  `create_<member>` and the rule of each attribute given (403).
- update / delete: visible (else 404), then `update_<member>` with each changed
  attribute's rule, or `delete_<member>` (403).

Targets carry the owner and flags of a subnet's or port's network and of a rule's
security group, read with the services' `show`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vifwire.api.services import ApiServices, Item
from vifwire.server import faults, sg_faults
from vifwire.server.policy import Policy, RequestContext

NOT_FOUND: dict[str, Callable[[str], faults.ServerFault]] = {
    "networks": faults.NetworkNotFound,
    "subnets": faults.SubnetNotFound,
    "ports": faults.PortNotFound,
    "agents": faults.AgentNotFound,
    "security_groups": sg_faults.SecurityGroupNotFound,
    "security_group_rules": sg_faults.SecurityGroupRuleNotFound,
    "subnetpools": faults.SubnetPoolNotFound,
}
OTHER_PROJECT = ("Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                 "in request requires admin privileges")
# Rendered on each item but never a policy attribute.
_NOT_ATTRIBUTES = frozenset({"id", "tags", "project_id", "tenant_id"})


class Enforcer:
    """One resource's checks; `exempt(ctx)` is the fast way out for an admin."""

    def __init__(self, policy: Policy, collection: str, member: str) -> None:
        self.policy, self.collection, self.member = policy, collection, member
        self.not_found = NOT_FOUND[collection]
        self._attribute_rules: dict[str, list[tuple[str, str]]] = {}

    def exempt(self, ctx: RequestContext) -> bool:
        return ctx.is_admin and self.policy.admin_passes_all

    def _rules_of(self, action: str, keys: Any) -> list[tuple[str, str]]:
        """(attribute, rule) for each of `keys` with an `<action>_<member>:<attr>` rule."""
        return [(k, f"{action}_{self.member}:{k}") for k in keys
                if k not in _NOT_ATTRIBUTES and self.policy.has(f"{action}_{self.member}:{k}")]

    def _hidden(self, ctx: RequestContext, item: Item) -> tuple[list[str], list[tuple[str, str]]]:
        """The attributes this context never reads (rules of roles only, decided once),
        and the (attribute, rule) pairs left to decide per item."""
        rules = self._attribute_rules.get("get")
        if rules is None:  # the rendered keys are the same for every item of a collection
            rules = self._attribute_rules["get"] = self._rules_of("get", item.keys())
        free = [(a, r) for a, r in rules if self.policy.target_free(r)]
        never = [a for a, r in free if not self.policy.enforce(ctx, r, {})]
        return never, [(a, r) for a, r in rules if (a, r) not in free]

    def _readable(self, ctx: RequestContext, items: list[Item]) -> list[Item]:
        """`items` (freshly rendered for this request) without what the context may not
        read; the role-only rules (`binding:*`, `provider:*`) are checked once."""
        if not items:
            return items
        never, per_item = self._hidden(ctx, items[0])
        for item in items:
            for attr in never:
                item.pop(attr, None)
            for attr, rule in per_item:
                if attr in item and not self.policy.enforce(ctx, rule, item):
                    del item[attr]
        return items

    def target(self, services: ApiServices, item: Item) -> dict[str, Any]:
        target = dict(item)
        if self.collection in ("subnets", "ports") and item.get("network_id"):
            network = services.networks.show(item["network_id"])
            target["network:tenant_id"] = target["network:project_id"] = network["project_id"]
            target["network:shared"] = network.get("shared", False)
            target["network:router:external"] = network.get("router:external", False)
        if self.collection == "security_group_rules" and item.get("security_group_id"):
            group = services.security_groups.show(item["security_group_id"])
            target["security_group:tenant_id"] = group["project_id"]
        return target

    # -- the operations --------------------------------------------------------

    def listed(self, ctx: RequestContext, items: list[Item]) -> list[Item]:
        if self.exempt(ctx):
            return items
        if self.collection == "agents":
            items = [i for i in items if self.policy.enforce(ctx, "get_agent", i)]
        return self._readable(ctx, items)

    def visible(self, ctx: RequestContext, services: ApiServices, item: Item) -> dict[str, Any]:
        """The item's policy target; a 404 when the context may not see it."""
        target = self.target(services, item)
        if not self.policy.enforce(ctx, f"get_{self.member}", target):
            raise self.not_found(item["id"])
        return target

    def shown(self, ctx: RequestContext, services: ApiServices, item: Item) -> Item:
        if self.exempt(ctx):
            return item
        self.visible(ctx, services, item)
        return self._readable(ctx, [item])[0]

    def creating(self, ctx: RequestContext, services: ApiServices, body: Item) -> None:
        if body.get("project_id") != ctx.project_id and not ctx.is_admin:
            raise faults.BadRequest(OTHER_PROJECT)
        if self.exempt(ctx):
            return
        self._parent_visible(ctx, services, body)
        target = self.target(services, body)
        self.policy.authorize(ctx, f"create_{self.member}", target)
        self._authorize_attributes(ctx, "create", body, target)

    def _parent_visible(self, ctx: RequestContext, services: ApiServices, body: Item) -> None:
        """A network or security group the caller cannot see is not found."""
        if self.collection in ("subnets", "ports") and body.get("network_id"):
            network = services.networks.show(body["network_id"])
            if not self.policy.enforce(ctx, "get_network", network):
                raise faults.NetworkNotFound(body["network_id"])
        groups = [body["security_group_id"]] if self.collection == "security_group_rules" \
            and body.get("security_group_id") else []
        if self.collection == "ports" and isinstance(body.get("security_groups"), list):
            groups += body["security_groups"]  # a port's groups must be the caller's to see
        for group_id in groups:
            group = services.security_groups.show(group_id)
            if not self.policy.enforce(ctx, "get_security_group", group):
                raise sg_faults.SecurityGroupNotFound(group_id)

    def _authorize_attributes(self, ctx: RequestContext, action: str, changes: Item,
                              target: dict[str, Any]) -> None:
        for _attr, rule in self._rules_of(action, changes.keys()):
            self.policy.authorize(ctx, rule, target)
        ips = changes.get("fixed_ips")
        if self.collection == "ports" and isinstance(ips, list):
            for key in ("ip_address", "subnet_id"):
                rule = f"{action}_port:fixed_ips:{key}"
                if any(isinstance(ip, dict) and key in ip for ip in ips) \
                        and self.policy.has(rule):
                    self.policy.authorize(ctx, rule, target)

    def updating(self, ctx: RequestContext, services: ApiServices, item: Item,
                 changes: Item) -> None:
        if self.exempt(ctx):
            return
        target = {**self.visible(ctx, services, item), **changes}
        self.policy.authorize(ctx, f"update_{self.member}", target)
        if "security_groups" in changes:
            self._parent_visible(ctx, services, {"security_groups": changes["security_groups"]})
        self._authorize_attributes(ctx, "update", changes, target)

    def deleting(self, ctx: RequestContext, services: ApiServices, item: Item) -> None:
        if self.exempt(ctx):
            return
        target = self.visible(ctx, services, item)
        self.policy.authorize(ctx, f"delete_{self.member}", target)
