"""Ask a DNS server directly (one UDP query, standard library only): what do the zone's name servers
answer for a name right now? Used to verify a DNS switch from the outside."""

from __future__ import annotations

import secrets
import socket
import struct
from typing import Final

A: Final = 1
CNAME: Final = 5


def build_query(name: str, qtype: int) -> tuple[int, bytes]:
    ident = secrets.randbits(16)
    header = struct.pack(">HHHHHH", ident, 0x0000, 1, 0, 0, 0)  # no recursion: ask the authority itself
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    return ident, header + labels + struct.pack(">HH", qtype, 1)


def read_name(packet: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) name at `offset`; returns it and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounded: a malicious packet cannot loop us forever
        length = packet[offset]
        if length & 0xC0 == 0xC0:  # pointer
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end >= 0 else offset + 1)
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    raise ValueError("DNS name too long or looping")


def parse_answers(packet: bytes, ident: int) -> list[tuple[int, str]]:
    got, _flags, questions, answers = struct.unpack(">HHHH", packet[:8])
    if got != ident:
        raise ValueError("DNS answer to another query")
    offset = 12
    for _ in range(questions):
        _, offset = read_name(packet, offset)
        offset += 4
    records = []
    for _ in range(answers):
        _, offset = read_name(packet, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", packet[offset : offset + 10])
        offset += 10
        data = packet[offset : offset + length]
        if rtype == A and length == 4:
            records.append((A, socket.inet_ntoa(data)))
        elif rtype == CNAME:
            records.append((CNAME, read_name(packet, offset)[0]))
        offset += length
    return records


def ask(server: tuple[str, int], name: str, qtype: int = A, timeout: float = 3.0) -> list[tuple[int, str]]:
    ident, query = build_query(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, server)
        packet, _ = sock.recvfrom(4096)
    return parse_answers(packet, ident)
