"""Traffic probes run inside a VM's namespace (`ip netns exec <ns> python fw_probe.py ...`).

    serve <log> <tcp ports,> <udp ports,>   echo TCP/UDP; each UDP datagram is logged
    tcp <ip> <port> [src]                   exit 0 if a connection echoes
    udp <ip> <port> [src]                   exit 0 if a datagram is echoed
    blast <ip> <port> <seconds>             send a datagram every 10 ms
    nocsum <device>                         turn off the device's TX checksum offload

A veth hands its peer TCP/UDP packets with a partial checksum (offload), which
the userspace datapath's conntrack marks invalid; a VM's NIC computes it.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import selectors
import socket
import struct
import sys
import time

SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17


def nocsum(device: str) -> None:
    value = array.array("I", [ETHTOOL_STXCSUM, 0])
    address, _ = value.buffer_info()
    ifreq = struct.pack("16sP", device.encode(), address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)


def serve(log: str, tcp: list[int], udp: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for p in tcp:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", p))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for p in udp:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", p))
        sel.register(u, selectors.EVENT_READ, "udp")
    with open(log, "a", buffering=1) as out:
        out.write("ready\n")
        while True:
            for key, _ in sel.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    conn.settimeout(2)
                    with contextlib.suppress(OSError):
                        conn.sendall(conn.recv(64))
                    conn.close()
                else:
                    data, peer = sock.recvfrom(64)
                    out.write(f"udp {sock.getsockname()[1]} {peer[0]}\n")
                    sock.sendto(data, peer)


def main() -> int:
    mode, *args = sys.argv[1:]
    if mode == "serve":
        serve(args[0], [int(p) for p in args[1].split(",") if p],
              [int(p) for p in args[2].split(",") if p])
        return 0
    if mode == "nocsum":
        nocsum(args[0])
        return 0
    ip, port = args[0], int(args[1])
    if mode == "blast":
        end = time.monotonic() + float(args[2])
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                u.sendto(b"blast", (ip, port))
            time.sleep(0.01)
        return 0
    src = args[2] if len(args) > 2 else None
    kind = socket.SOCK_STREAM if mode == "tcp" else socket.SOCK_DGRAM
    for _ in range(2):
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(1.0)
        if src:
            s.bind((src, 0))
        try:
            if mode == "tcp":
                s.connect((ip, port))
                s.sendall(b"hello")
            else:
                s.sendto(b"hello", (ip, port))
            if s.recv(64) == b"hello":
                return 0
        except OSError:
            pass
        finally:
            s.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
