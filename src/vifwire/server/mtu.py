"""A network's MTU by Neutron's rule (the ML2 type drivers' `get_mtu`).

Flat and VLAN networks get the underlay's MTU, `global_physnet_mtu`. A tunnel
network gets the smaller of `global_physnet_mtu` and `path_mtu` (when set),
less the outer IP header of the overlay's IP version (20 bytes for IPv4, 40
for IPv6) and the protocol's own encapsulation: VXLAN 30 (outer Ethernet 14 +
UDP 8 + VXLAN 8), so 1500 - 50 = 1450 on a default IPv4 underlay, as Neutron.
Geneve is taken at Neutron's default `max_header_size` (30).
"""

from __future__ import annotations

from vifwire.settings import Settings

IP_HEADER = {4: 20, 6: 40}
ENCAPSULATION = {"vxlan": 30, "geneve": 30, "gre": 22}


def network_mtu(settings: Settings, network_type: str) -> int:
    underlay = settings.global_physnet_mtu
    encapsulation = ENCAPSULATION.get(network_type)
    if encapsulation is None:
        return underlay
    bounds = [m for m in (underlay, settings.path_mtu) if m > 0]
    if not bounds:
        return 0  # Neutron: unknown
    return min(bounds) - IP_HEADER[settings.overlay_ip_version] - encapsulation
