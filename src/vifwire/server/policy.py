"""Who may do what: the request context and Neutron's default policy (Zed, legacy rules).

`RequestContext` is what authentication made of a request (project, user, roles,
is_admin). `Policy` answers "may this context do <action> on <target>" with
Neutron's default rules (`DEFAULT_RULES`, as Neutron Zed with
`enforce_new_defaults = false`), which a policy file (oslo.policy's YAML or JSON:
rule name -> check string) overrides rule by rule.

Check strings use oslo.policy's language, the part Neutron's rules use: `rule:NAME`,
`role:NAME`, `field:networks:ATTR=VALUE`, `KEY:%(ATTR)s` (a context value against
the target's), `KEY:literal`, `@` / `""` (always), `!` (never), and `not` / `and`
/ `or` with parentheses. Rules are compiled once into closures: a check costs a
few function calls, so the per-item attribute checks of a long list stay cheap.

Targets are rendered resources; a subnet's or port's target also carries its
network's owner and flags as `network:tenant_id`, `network:shared` and
`network:router:external`, a rule's its group's as `security_group:tenant_id`
(what Neutron's `field:` and `%(network:tenant_id)s` checks read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vifwire.server import faults

Target = Mapping[str, Any]
Check = Callable[["RequestContext", Target], bool]


@dataclass(frozen=True)
class RequestContext:
    project_id: str
    user_id: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False

    @property
    def visible_to(self) -> str | None:
        """The project a list is scoped to in SQL (None: an admin sees every project's)."""
        return None if self.is_admin else self.project_id


ADMIN_ROLE = "admin"


def context_for(project_id: str, user_id: str, roles: frozenset[str]) -> RequestContext:
    """Neutron's context_is_admin default: the admin role makes an admin context."""
    return RequestContext(project_id, user_id, roles, ADMIN_ROLE in roles)


def _admin_only(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, "rule:admin_only")


_PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
_NETWORK_OWNER_OR_ADVSVC = "rule:context_is_advsvc or rule:admin_or_network_owner"

# Neutron Zed's defaults with enforce_new_defaults = false (its deprecated, project-
# based rules), for the resources vifwire serves.
DEFAULT_RULES: dict[str, str] = {
    "context_is_admin": "role:admin",
    "owner": "tenant_id:%(tenant_id)s",
    "admin_or_owner": "rule:context_is_admin or rule:owner",
    "context_is_advsvc": "role:advsvc",
    "admin_or_network_owner": "rule:context_is_admin or tenant_id:%(network:tenant_id)s",
    "admin_owner_or_network_owner": "rule:owner or rule:admin_or_network_owner",
    "network_owner": "tenant_id:%(network:tenant_id)s",
    "admin_only": "rule:context_is_admin",
    "regular_user": "",
    "shared": "field:networks:shared=True",
    "external": "field:networks:router:external=True",
    "network_device": "field:port:device_owner=~^network:",
    "sg_owner": "tenant_id:%(security_group:tenant_id)s",
    "default": "rule:admin_or_owner",
    # networks
    "create_network": "",
    "get_network": "rule:admin_or_owner or rule:shared or rule:external or "
                   "rule:context_is_advsvc",
    "update_network": "rule:admin_or_owner",
    "delete_network": "rule:admin_or_owner",
    **_admin_only(*(f"{action}_network:{attr}" for action in ("create", "get", "update")
                    for attr in (*_PROVIDER, "segments")),
                  "create_network:shared", "update_network:shared",
                  "create_network:router:external", "update_network:router:external",
                  "create_network:is_default", "update_network:is_default"),
    "get_network:router:external": "",
    # subnets
    "create_subnet": "rule:admin_or_network_owner",
    "get_subnet": "rule:admin_or_owner or rule:shared",
    "update_subnet": "rule:admin_or_network_owner",
    "delete_subnet": "rule:admin_or_network_owner",
    **_admin_only("create_subnet:segment_id", "get_subnet:segment_id",
                  "update_subnet:segment_id", "create_subnet:service_types",
                  "update_subnet:service_types"),
    # ports
    "create_port": "",
    "get_port": "rule:context_is_advsvc or rule:admin_owner_or_network_owner",
    "update_port": "rule:admin_or_owner or rule:context_is_advsvc",
    "delete_port": "rule:context_is_advsvc or rule:admin_owner_or_network_owner",
    "create_port:device_owner": "not rule:network_device or rule:context_is_advsvc or "
                                "rule:admin_or_network_owner",
    "update_port:device_owner": "not rule:network_device or rule:context_is_advsvc or "
                                "rule:admin_or_network_owner",
    "create_port:mac_address": _NETWORK_OWNER_OR_ADVSVC,
    "update_port:mac_address": "rule:admin_only or rule:context_is_advsvc",
    "create_port:fixed_ips:ip_address": _NETWORK_OWNER_OR_ADVSVC,
    "update_port:fixed_ips:ip_address": _NETWORK_OWNER_OR_ADVSVC,
    "create_port:fixed_ips:subnet_id": _NETWORK_OWNER_OR_ADVSVC + " or rule:shared",
    "update_port:fixed_ips:subnet_id": _NETWORK_OWNER_OR_ADVSVC + " or rule:shared",
    "create_port:port_security_enabled": _NETWORK_OWNER_OR_ADVSVC,
    "update_port:port_security_enabled": _NETWORK_OWNER_OR_ADVSVC,
    "create_port:allowed_address_pairs": "rule:admin_or_network_owner",
    "update_port:allowed_address_pairs": "rule:admin_or_network_owner",
    "create_port:binding:vnic_type": "rule:admin_or_owner",
    "update_port:binding:vnic_type": "rule:admin_or_owner or rule:context_is_advsvc",
    **_admin_only("create_port:binding:host_id", "update_port:binding:host_id",
                  "create_port:binding:profile", "update_port:binding:profile",
                  "get_port:binding:vif_type", "get_port:binding:vif_details",
                  "get_port:binding:host_id", "get_port:binding:profile"),
    # agents
    **_admin_only("get_agent", "update_agent", "delete_agent"),
    # security groups and their rules
    "create_security_group": "rule:admin_or_owner",
    "get_security_group": "rule:admin_or_owner",
    "update_security_group": "rule:admin_or_owner",
    "delete_security_group": "rule:admin_or_owner",
    "create_security_group_rule": "rule:admin_or_owner",
    "get_security_group_rule": "rule:admin_or_owner or rule:sg_owner",
    "delete_security_group_rule": "rule:admin_or_owner",
}


class PolicyError(Exception):
    """A policy file that cannot be read, or a check string that does not parse."""


class PolicyNotAuthorized(faults.ServerFault):
    """Raised by `Policy.authorize`: Neutron's 403."""

    status = 403
    type = "PolicyNotAuthorized"

    def __init__(self, action: str) -> None:
        super().__init__(f"(rule:{action}) is disallowed by policy")
        self.action = action


def load_rules(path: Path) -> dict[str, str]:
    """A policy file's rules (YAML or JSON: name -> check string), each checked to parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            loaded = json.loads(text)
        else:
            import yaml

            loaded = yaml.safe_load(text) or {}
    except Exception as exc:  # json's ValueError, yaml.YAMLError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"policy file {path} does not parse: {first}") from None
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
        raise PolicyError(f"policy file {path}: want a mapping of rule name to check string")
    for name, text in loaded.items():  # each alone first: the error names its rule
        try:
            Policy({name: text}).check(name)
        except PolicyError as exc:
            raise PolicyError(f"policy file {path}: rule {name!r}: {exc}") from None
    try:
        together = Policy(loaded)  # and together: a cycle between two rules
        for name in loaded:
            together.check(name)
    except PolicyError as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
    return loaded


def _tokens(text: str) -> list[str]:
    """oslo.policy's way: split on spaces, then peel parentheses off each end."""
    out: list[str] = []
    for word in text.split():
        lead = len(word) - len(word.lstrip("("))
        out.extend("(" * lead)
        word = word[lead:]
        trail = len(word) - len(word.rstrip(")"))  # "%(attr)s" ends in "s": kept whole
        if word[:len(word) - trail]:
            out.append(word[:len(word) - trail])
        out.extend(")" * trail)
    return out


class Policy:
    """The rules, compiled on first use; `enforce` answers, `authorize` raises."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.rules = {**DEFAULT_RULES, **(overrides or {})}
        self._compiled: dict[str, Check] = {}
        self._compiling: set[str] = set()
        # With the defaults an admin passes every action's rule: its requests skip them.
        admin = RequestContext("", "", frozenset({ADMIN_ROLE}), True)
        self.admin_passes_all = all(
            self.check(name)(admin, {}) for name in (*self.rules, "default")
            if name == "default" or name.split("_", 1)[0] in ("create", "get", "update",
                                                               "delete"))

    @classmethod
    def from_file(cls, path: Path | None) -> Policy:
        return cls(load_rules(path) if path is not None else None)

    def has(self, name: str) -> bool:
        return name in self.rules

    def check(self, name: str) -> Check:
        """The compiled rule `name` (an unknown rule is the `default` rule, as oslo's)."""
        compiled = self._compiled.get(name)
        if compiled is None:
            if name in self._compiling:
                raise PolicyError(f"rule {name!r} refers to itself")
            self._compiling.add(name)
            try:
                text = self.rules.get(name, self.rules.get("default", "!"))
                compiled = self._compiled[name] = self._parse(text)
            finally:
                self._compiling.discard(name)
        return compiled

    def target_free(self, name: str, _seen: frozenset[str] = frozenset()) -> bool:
        """Whether rule `name` reads nothing of the target (roles and literals only): its
        answer for one context holds for every item of a list."""
        if name in _seen:
            return False
        for token in _tokens(self.rules.get(name, self.rules.get("default", "!"))):
            if token in ("(", ")", "and", "or", "not", "@", "!"):
                continue
            kind, _, value = token.partition(":")
            if kind == "rule":
                if not self.target_free(value, _seen | {name}):
                    return False
            elif kind == "field" or "%(" in value:
                return False
        return True

    def enforce(self, ctx: RequestContext, action: str, target: Target) -> bool:
        if ctx.is_admin and self.admin_passes_all:
            return True
        return self.check(action)(ctx, target)

    def authorize(self, ctx: RequestContext, action: str, target: Target) -> None:
        if not self.enforce(ctx, action, target):
            raise PolicyNotAuthorized(action)

    # -- the check language ---------------------------------------------------

    def _parse(self, text: str) -> Check:
        tokens = _tokens(text)
        if not tokens:
            return _always
        at, check = self._or(tokens, 0)
        if at != len(tokens):
            raise PolicyError(f"unexpected {tokens[at]!r} in {text!r}")
        return check

    def _or(self, tokens: list[str], at: int) -> tuple[int, Check]:
        return self._chain(tokens, at, "or", self._and, any)

    def _and(self, tokens: list[str], at: int) -> tuple[int, Check]:
        return self._chain(tokens, at, "and", self._not, all)

    def _chain(self, tokens: list[str], at: int, word: str,
               term: Callable[[list[str], int], tuple[int, Check]],
               combine: Callable[[Iterator[bool]], bool]) -> tuple[int, Check]:
        """`term (word term)*`: the terms combined by any (or) or all (and)."""
        at, first = term(tokens, at)
        terms = [first]
        while at < len(tokens) and tokens[at] == word:
            at, nxt = term(tokens, at + 1)
            terms.append(nxt)
        if len(terms) == 1:
            return at, first
        return at, lambda ctx, target: combine(c(ctx, target) for c in terms)

    def _not(self, tokens: list[str], at: int) -> tuple[int, Check]:
        if at < len(tokens) and tokens[at] == "not":
            at, inner = self._not(tokens, at + 1)
            return at, lambda ctx, target: not inner(ctx, target)
        return self._atom(tokens, at)

    def _atom(self, tokens: list[str], at: int) -> tuple[int, Check]:
        if at >= len(tokens):
            raise PolicyError("a check string ends too soon")
        token = tokens[at]
        if token == "(":
            at, inner = self._or(tokens, at + 1)
            if at >= len(tokens) or tokens[at] != ")":
                raise PolicyError("a '(' is not closed")
            return at + 1, inner
        return at + 1, self._leaf(token)

    def _leaf(self, token: str) -> Check:
        if token == "@":
            return _always
        if token == "!":
            return _never
        kind, sep, value = token.partition(":")
        if not sep:
            raise PolicyError(f"{token!r} is not a check")
        if kind == "rule":
            return self.check(value)  # compiled now: a cycle is found at load
        if kind == "role":
            role = value.lower()
            return lambda ctx, target: role in ctx.roles
        if kind == "field":
            return _field_check(value)
        return _generic_check(kind, value)


def _always(ctx: RequestContext, target: Target) -> bool:
    return True


def _never(ctx: RequestContext, target: Target) -> bool:
    return False


def _field_check(spec: str) -> Check:
    """`field:networks:shared=True`: an attribute of the target (or of its network)."""
    resource, _, rest = spec.partition(":")
    attr, regex, wanted = rest.partition("=~")
    if not regex:
        attr, eq, wanted = rest.partition("=")
        if not eq:
            raise PolicyError(f"field:{spec} wants ATTR=VALUE")
    via = f"{resource[:-1] if resource.endswith('s') else resource}:{attr}"
    if regex:
        pattern = re.compile(wanted)

        def matches(ctx: RequestContext, target: Target) -> bool:
            value = target.get(via, target.get(attr))
            return isinstance(value, str) and pattern.match(value) is not None
        return matches

    def equals(ctx: RequestContext, target: Target) -> bool:
        value = target.get(via, target.get(attr))
        return str(value) == wanted if value is not None else False
    return equals


def _context_value(ctx: RequestContext, key: str) -> Any:
    if key in ("tenant_id", "project_id"):
        return ctx.project_id
    if key == "user_id":
        return ctx.user_id
    if key == "is_admin":
        return ctx.is_admin
    return None


def _generic_check(key: str, value: str) -> Check:
    """`tenant_id:%(tenant_id)s` (context vs target) or `is_admin:True` (literal)."""
    if value.startswith("%(") and value.endswith(")s"):
        attr = value[2:-2]
        alias = {"tenant_id": "project_id", "project_id": "tenant_id"}.get(attr)

        def against_target(ctx: RequestContext, target: Target) -> bool:
            actual = target.get(attr, target.get(alias) if alias else None)
            mine = _context_value(ctx, key)
            return actual is not None and mine is not None and str(mine) == str(actual)
        return against_target

    def literal(ctx: RequestContext, target: Target) -> bool:
        return str(_context_value(ctx, key)) == value
    return literal
