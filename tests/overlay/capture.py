"""Print the VXLAN packets seen on some interfaces, one JSON line each.

Run inside the namespace that holds the interfaces (`ip netns exec NS python
capture.py IFACE...`); tcpdump is not installed on these machines, so this is
an AF_PACKET socket per interface. The first line is {"ready": true}, once every
socket is bound; then, per UDP/4789 packet: the interface, the outer addresses,
the direction (out: sent by the interface), the VNI, the inner Ethernet
destination, source and type, and for an inner ARP
its opcode and target address. Stops on SIGTERM.
"""

from __future__ import annotations

import ipaddress
import json
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
VXLAN_PORT = 4789


def mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse(frame: bytes) -> dict[str, object] | None:
    if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != 0x0800:
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[9] != 17:  # UDP
        return None
    udp = ip[header:]
    if struct.unpack("!H", udp[2:4])[0] != VXLAN_PORT:
        return None
    vxlan = udp[8:16]
    inner = udp[16:]
    packet: dict[str, object] = {
        "src": str(ipaddress.ip_address(ip[12:16])), "dst": str(ipaddress.ip_address(ip[16:20])),
        "vni": int.from_bytes(vxlan[4:7], "big"), "inner_dst": mac(inner[0:6]),
        "inner_src": mac(inner[6:12]), "inner_type": struct.unpack("!H", inner[12:14])[0]}
    if packet["inner_type"] == 0x0806:
        arp = inner[14:]
        packet["arp_op"] = struct.unpack("!H", arp[6:8])[0]
        packet["arp_tpa"] = str(ipaddress.ip_address(arp[24:28]))
    return packet


def main(interfaces: list[str]) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sockets = {}
    for name in interfaces:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((name, 0))
        sockets[sock] = name
    print(json.dumps({"ready": True}), flush=True)
    while True:
        readable, _, _ = select.select(list(sockets), [], [])
        for sock in readable:
            frame, address = sock.recvfrom(65535)
            packet = parse(frame)
            if packet is not None:
                # "out": the interface sent it (towards whatever is on its other end).
                way = "out" if address[2] == socket.PACKET_OUTGOING else "in"
                print(json.dumps({"iface": sockets[sock], "dir": way, **packet}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
