"""A stand-in for a hosted zone's name servers: answers A and CNAME questions from moto's Route 53 over
real DNS packets on loopback, so the cutover's public check runs its production code on this machine."""

from __future__ import annotations

import socket
import struct
import threading

import boto3

from standby import dns_query
from standby.dns_query import A


class LocalNameServer:
    """A stand-in for the zone's name servers: answers from moto's Route 53, over real DNS packets."""

    def __init__(self, zone_id: str) -> None:
        self.zone_id = zone_id
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:
                return
            name, _ = dns_query.read_name(query, 12)
            self.queries.append(name)
            sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=self.zone_id)[
                "ResourceRecordSets"
            ]
            match = next(
                (r for r in sets if r["Name"].rstrip(".") == name and r["Type"] in ("A", "CNAME")), None
            )
            records: list[tuple[int, str]] = []
            if match and match["Type"] == "CNAME":
                records = [(dns_query.CNAME, match["ResourceRecords"][0]["Value"])]
            elif match:
                records = [
                    (dns_query.A, "192.0.2.10")
                ]  # the load balancer's address, as Route 53 resolves the alias
            self.sock.sendto(encode_answer(query, records), client)


def encode_answer(query: bytes, records: list[tuple[int, str]]) -> bytes:
    """An authoritative answer to `query` with `records` ((type, value) pairs)."""
    ident = struct.unpack(">H", query[:2])[0]
    question_end = 12
    while query[question_end] != 0:
        question_end += 1 + query[question_end]
    question = query[12 : question_end + 5]
    body = b""
    for rtype, value in records:
        if rtype == A:
            data = socket.inet_aton(value)
        else:
            data = b"".join(bytes([len(p)]) + p.encode("ascii") for p in value.rstrip(".").split(".")) + b"\0"
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(data)) + data
    header = struct.pack(">HHHHHH", ident, 0x8400, 1, len(records), 0, 0)
    return header + question + body
