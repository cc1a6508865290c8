"""Who owns a claim: the records a call works for, and nothing else (stream_app.claims)."""

from __future__ import annotations

from stream_app.claims import Origin


def test_an_origin_owns_new_claims_and_those_of_its_own_records() -> None:
    o = Origin.of(3, [40, 41, 42], topic="txmon.transactions", group="txmon-worker")
    assert o.cause(41) == b"txmon-worker/txmon.transactions/3:41"
    assert o.owns(None)  # nobody claimed it yet
    assert o.owns(o.cause(42)) and o.owns(b"done:" + o.cause(40))  # an earlier try of its records
    assert not o.owns(o.cause(43))  # a later record of the same partition
    assert not o.owns(Origin.of(2, [41], "txmon.transactions", "txmon-worker").cause(41))  # another partition
    assert not o.owns(Origin.of(3, [41], "txmon.transactions", "other-group").cause(41))  # another lineage
    assert not o.owns(b"garbage") and not o.owns(b"txmon-worker/txmon.transactions/3:x")


def test_direct_origins_own_only_what_they_claim_themselves() -> None:
    a, b = Origin.direct(), Origin.direct()
    assert a.owns(a.cause(a.last)) and not b.owns(a.cause(a.last))
