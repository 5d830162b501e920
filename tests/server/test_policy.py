"""Neutron's default rules and the policy language (vifwire.server.policy), without HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from vifwire.server.policy import (
    Policy,
    PolicyError,
    PolicyNotAuthorized,
    RequestContext,
    context_for,
    load_rules,
)

ALICE = context_for("alpha", "alice", frozenset({"member"}))
BOB = context_for("beta", "bob", frozenset({"member", "reader"}))
ADMIN = context_for("admin-project", "root", frozenset({"admin"}))


def test_the_default_rules() -> None:
    policy = Policy()
    mine = {"project_id": "alpha", "tenant_id": "alpha", "shared": False}
    assert policy.enforce(ALICE, "get_network", mine)
    assert not policy.enforce(BOB, "get_network", mine)
    assert policy.enforce(BOB, "get_network", {**mine, "shared": True})
    assert policy.enforce(BOB, "get_network", {**mine, "router:external": True})
    assert not policy.enforce(BOB, "update_network", {**mine, "shared": True})
    assert policy.enforce(ADMIN, "update_network", mine)
    for rule in ("create_port:binding:host_id", "get_port:binding:vif_type",
                 "create_network:provider:network_type", "get_agent", "create_network:shared"):
        assert not policy.enforce(ALICE, rule, mine), rule
        assert policy.enforce(ADMIN, rule, mine), rule
    port_on_alices_net = {"project_id": "beta", "network:tenant_id": "alpha"}
    assert policy.enforce(ALICE, "get_port", port_on_alices_net)
    assert policy.enforce(ALICE, "delete_port", port_on_alices_net)
    assert not policy.enforce(ALICE, "update_port", port_on_alices_net)
    assert policy.enforce(BOB, "update_port", port_on_alices_net)
    # "not rule:network_device": a plain device_owner is anyone's, network:* the owner's.
    assert policy.enforce(BOB, "create_port:device_owner", {"device_owner": "compute:nova"})
    assert not policy.enforce(BOB, "create_port:device_owner",
                              {"device_owner": "network:dhcp", "network:tenant_id": "alpha"})
    assert policy.enforce(ALICE, "create_port:device_owner",
                          {"device_owner": "network:dhcp", "network:tenant_id": "alpha"})
    assert policy.admin_passes_all
    with pytest.raises(PolicyNotAuthorized, match=r"\(rule:get_agent\) is disallowed"):
        policy.authorize(ALICE, "get_agent", {})


def test_the_check_language() -> None:
    policy = Policy({"a": "(role:x or role:y) and not role:z", "b": "@", "c": "!",
                     "d": "user_id:%(user_id)s", "e": "is_admin:True", "f": "rule:a or rule:c",
                     "g": "field:networks:shared=True"})
    def ctx(*roles: str) -> RequestContext:
        return context_for("p", "u", frozenset(roles))
    assert policy.enforce(ctx("x"), "a", {})
    assert policy.enforce(ctx("y"), "f", {})
    assert not policy.enforce(ctx("x", "z"), "a", {})
    assert not policy.enforce(ctx(), "a", {})
    assert policy.enforce(ctx(), "b", {}) and not policy.enforce(ctx(), "c", {})
    assert policy.enforce(ctx(), "d", {"user_id": "u"})
    assert not policy.enforce(ctx(), "d", {"user_id": "v"}) and not policy.enforce(ctx(), "d", {})
    assert policy.enforce(ctx("admin"), "e", {}) and not policy.enforce(ctx(), "e", {})
    assert policy.enforce(ctx(), "g", {"network:shared": True})
    assert not policy.enforce(ctx(), "g", {"network:shared": False})
    # An unknown rule is the default rule (admin or owner), as oslo.policy's.
    assert policy.enforce(ctx(), "nobody_wrote_this", {"project_id": "p"})
    assert not policy.enforce(ctx(), "nobody_wrote_this", {"project_id": "q"})


def test_a_policy_file_overrides_rules(tmp_path: Path) -> None:
    yaml_file = tmp_path / "policy.yaml"
    yaml_file.write_text('"get_network": "rule:admin_only"\n"get_agent": ""\n')
    policy = Policy.from_file(yaml_file)
    assert not policy.enforce(ALICE, "get_network", {"project_id": "alpha"})
    assert policy.enforce(ALICE, "get_agent", {})
    assert policy.admin_passes_all
    json_file = tmp_path / "policy.json"
    json_file.write_text('{"create_network": "role:netadmin"}')
    strict = Policy.from_file(json_file)
    assert not strict.admin_passes_all  # an admin now meets the checks as anyone does
    assert not strict.enforce(ADMIN, "create_network", {"project_id": "admin-project"})


@pytest.mark.parametrize("text, error", [
    ('"a": "role:x or"\n', "ends too soon"),
    ('"a": "(role:x"\n', "not closed"),
    ('"a": "role:x )"\n', "unexpected"),
    ('"a": "nonsense"\n', "is not a check"),
    ('"a": "rule:a"\n', "refers to itself"),
    ('"a": "rule:b"\n"b": "rule:a"\n', "refers to itself"),
    ("- a list\n", "mapping of rule name"),
    ('"a": [1]\n', "mapping of rule name"),
    ("a: [\n", "does not parse"),
])
def test_a_bad_policy_file_is_one_clear_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=f"policy file {path}.*{error}"):
        load_rules(path)
    with pytest.raises(PolicyError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_role_only_rules_are_target_free() -> None:
    policy = Policy({"mixed": "role:x or tenant_id:%(tenant_id)s", "via": "rule:admin_only",
                     "fielded": "not field:networks:shared=True"})
    assert policy.target_free("get_port:binding:host_id")
    assert policy.target_free("via") and policy.target_free("regular_user")
    assert not policy.target_free("mixed") and not policy.target_free("fielded")
    assert not policy.target_free("get_network")
