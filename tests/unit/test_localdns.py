"""flight_server/localdns.py: the A records HAProxy's resolvers get, over real UDP."""

from __future__ import annotations

import socket
import struct

from flight_server.localdns import DnsServer


def _query(qid: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", qtype, 1)


def _ask(server: DnsServer, packet: bytes) -> tuple[int, int, list[str]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(packet, ("127.0.0.1", server.port))
        reply = s.recv(4096)
    qid, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", reply[:12])
    answers = reply[len(packet):]
    ips = [socket.inet_ntoa(answers[i * 16 + 12:i * 16 + 16]) for i in range(ancount)]
    return qid, flags, ips


def test_answers_a_records_of_its_name_and_nothing_else():
    server = DnsServer("miniodb.cluster.local", ["127.0.0.2", "127.0.0.3"]).start()
    try:
        qid, flags, ips = _ask(server, _query(4242, "MinIODB.cluster.local", 1))
        assert qid == 4242 and flags & 0x8000 and flags & 0x000F == 0 and ips == ["127.0.0.2", "127.0.0.3"]
        assert _ask(server, _query(7, "miniodb.cluster.local", 28))[2] == []  # AAAA: none, not an error
        _, flags, ips = _ask(server, _query(8, "other.local", 1))
        assert flags & 0x000F == 3 and ips == []  # NXDOMAIN
        server.addresses = ["127.0.0.4"]  # a node leaves, another comes
        assert _ask(server, _query(9, "miniodb.cluster.local", 1))[2] == ["127.0.0.4"]
    finally:
        server.stop()
