"""Nova's own calls during boot and delete, as nova/network/neutron.py issues them.

Requests are built the way python-neutronclient builds them for Nova: repeated
`fields=`, list filters as repeated keys, the bodies of `_create_port_minimal`,
`_update_ports_for_instance` (via `_populate_neutron_extension_values`),
`_unbind_ports` and `deallocate_for_instance`.
"""

from __future__ import annotations

import uuid

import requests

from .conftest import HOST
from .live import LiveServer

PROJECT = "6c3e5e6b0e2f4b0c9a6e9a0a5d8f1c2b"


def test_boot_and_delete(server: LiveServer) -> None:
    api = requests.Session()
    base = server.url + "/v2.0"
    net = api.post(f"{base}/networks", json={"network": {"name": "vm-net"}}).json()["network"]
    subnet = api.post(f"{base}/subnets", json={"subnet": {
        "network_id": net["id"], "ip_version": 4, "cidr": "192.168.7.0/24"}}).json()["subnet"]
    instance = str(uuid.uuid4())

    # _refresh_neutron_extensions_cache, then _get_available_networks(net_ids).
    aliases = {e["alias"] for e in api.get(f"{base}/extensions").json()["extensions"]}
    assert {"binding", "port-security"} <= aliases
    assert "port-binding-extended" not in aliases  # Nova then uses the legacy binding path
    nets = api.get(f"{base}/networks", params={"id": [net["id"]]}).json()["networks"]
    assert [n["id"] for n in nets] == [net["id"]]

    # _create_port_minimal
    created = api.post(f"{base}/ports", json={"port": {
        "device_id": instance, "network_id": net["id"], "admin_state_up": True,
        "tenant_id": PROJECT}})
    assert created.status_code == 201, created.text
    port = created.json()["port"]
    assert port["binding:vif_type"] == "unbound" and port["tenant_id"] == PROJECT
    assert port["fixed_ips"][0]["subnet_id"] == subnet["id"]

    # _update_ports_for_instance: device_owner, binding:host_id, binding:profile
    updated = api.put(f"{base}/ports/{port['id']}", json={"port": {
        "device_owner": "compute:nova", "binding:host_id": HOST, "device_id": instance,
        "binding:profile": {}}})
    assert updated.status_code == 200, updated.text
    bound = updated.json()["port"]
    assert (bound["binding:host_id"], bound["binding:vif_type"]) == (HOST, "ovs")
    assert bound["binding:vif_details"]["bridge_name"] == "br-int"
    assert bound["binding:vnic_type"] == "normal"

    # _build_network_info_model: the instance's ports, their networks and subnets.
    mine = api.get(f"{base}/ports", params={"tenant_id": PROJECT,
                                            "device_id": instance}).json()["ports"]
    assert [p["id"] for p in mine] == [port["id"]]
    subnets = api.get(f"{base}/subnets", params={"id": [subnet["id"]]}).json()["subnets"]
    assert subnets[0]["gateway_ip"] == "192.168.7.1"
    dns = api.get(f"{base}/networks/{net['id']}", params={"fields": ["dns_domain"]})
    assert dns.json() == {"network": {}}
    wanted = ["binding:profile", "network_id"]
    shown = api.get(f"{base}/ports/{port['id']}", params={"fields": wanted}).json()["port"]
    assert shown == {"binding:profile": {}, "network_id": net["id"]}

    # deallocate_for_instance: list by device_id, delete what Nova created.
    ids = [p["id"] for p in api.get(f"{base}/ports",
                                    params={"device_id": instance}).json()["ports"]]
    assert ids == [port["id"]]
    assert api.delete(f"{base}/ports/{port['id']}").status_code == 204
    again = api.delete(f"{base}/ports/{port['id']}")
    assert again.status_code == 404  # Nova's _delete_ports tolerates exactly this
    assert again.json()["NeutronError"]["type"] == "PortNotFound"
    assert api.get(f"{base}/ports", params={"device_id": instance}).json() == {"ports": []}


def test_unbind_preexisting_port(server: LiveServer) -> None:
    """A user-created port handed to Nova is unbound, not deleted, on VM delete."""
    api = requests.Session()
    base = server.url + "/v2.0"
    net = api.post(f"{base}/networks", json={"network": {"name": "pre"}}).json()["network"]
    port = api.post(f"{base}/ports", json={"port": {"network_id": net["id"]}}).json()["port"]
    instance = str(uuid.uuid4())
    api.put(f"{base}/ports/{port['id']}", json={"port": {
        "device_owner": "compute:nova", "binding:host_id": HOST, "device_id": instance,
        "binding:profile": {"trusted": True}}}).raise_for_status()
    # _unbind_ports
    unbound = api.put(f"{base}/ports/{port['id']}", json={"port": {
        "device_id": "", "device_owner": "", "binding:host_id": None,
        "binding:profile": {"trusted": True}}})
    assert unbound.status_code == 200, unbound.text
    after = unbound.json()["port"]
    assert (after["device_id"], after["device_owner"], after["binding:host_id"]) == ("", "", "")
    assert after["binding:vif_type"] == "unbound"
    assert after["binding:profile"] == {"trusted": True}
    assert api.get(f"{base}/ports", params={"device_id": instance}).json() == {"ports": []}
