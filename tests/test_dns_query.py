"""The DNS client that verifies a switch from the outside: real packets, round trip."""

from __future__ import annotations

import pytest

from standby import dns_query
from standby.local.name_server import encode_answer


def test_an_answer_round_trips_with_compressed_names() -> None:
    ident, query = dns_query.build_query("www.acme-shop.example", dns_query.A)
    answer = encode_answer(query, [(dns_query.CNAME, "www-1.herokudns.com"), (dns_query.A, "192.0.2.7")])
    assert dns_query.parse_answers(answer, ident) == [
        (dns_query.CNAME, "www-1.herokudns.com"),
        (dns_query.A, "192.0.2.7"),
    ]


def test_an_answer_to_another_query_is_refused() -> None:
    ident, query = dns_query.build_query("www.acme-shop.example", dns_query.A)
    with pytest.raises(ValueError, match="another query"):
        dns_query.parse_answers(encode_answer(query, []), (ident + 1) % 65536)


def test_a_looping_name_pointer_is_refused() -> None:
    packet = b"\x00" * 12 + b"\xc0\x0c"  # a pointer to itself
    with pytest.raises(ValueError, match="looping"):
        dns_query.read_name(packet, 12)
