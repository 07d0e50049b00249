"""A minimal DNS server for a cluster on one machine: A records of one name -> loopback addresses.

HAProxy's shipped config (``deploy/haproxy/haproxy.cfg``) finds nodes by DNS, as in Swarm and
Kubernetes. On a laptop (``miniodb cluster up``) and in the tests, nodes listen on 127.0.0.2,
127.0.0.3 ... with the same ports, and this server answers HAProxy's A queries for one name
with those addresses (any other name: NXDOMAIN; other record types: no answer). UDP only,
no recursion, no caching: nothing beyond what HAProxy's resolvers need.

    python -m flight_server.localdns --port 10053 --name miniodb.cluster.local 127.0.0.2 127.0.0.3
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import threading

A, IN, TTL = 1, 1, 1


class DnsServer:
    """Answers A queries for ``name`` with ``addresses`` (changeable at run time); anything else: no answer."""

    def __init__(self, name: str, addresses: list[str], host: str = "127.0.0.1", port: int = 0):
        self.name = name.lower().rstrip(".")
        self.addresses = list(addresses)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="miniodb-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.sock.getsockname()[0]}:{self.port}"

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            reply = self.answer(data)
            if reply:
                self.sock.sendto(reply, peer)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, flags = struct.unpack(">HH", query[:4])
        labels, i = [], 12
        while i < len(query) and query[i] != 0:
            n = query[i]
            labels.append(query[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        question_end = i + 5  # the zero label, QTYPE, QCLASS
        if question_end > len(query):
            return None
        qtype = struct.unpack(">H", query[i + 1:i + 3])[0]
        known = ".".join(labels).lower() == self.name
        ips = list(self.addresses) if known and qtype == A else []
        rcode = 0 if known else 3  # NXDOMAIN for any other name
        header = struct.pack(">HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(ips), 0, 0)
        answers = b"".join(struct.pack(">HHHIH", 0xC00C, A, IN, TTL, 4) + socket.inet_aton(ip) for ip in ips)
        return header + query[12:question_end] + answers




def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="answer A queries for one name with fixed addresses")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("addresses", nargs="+")
    args = p.parse_args(argv)
    server = DnsServer(args.name, args.addresses, host=args.host, port=args.port).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
