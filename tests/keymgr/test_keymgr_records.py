"""The key index's compact records: every id and row round-trips exactly, in or out of Tollway's formats."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keymgr.entries import SubscriptionEntry
from keymgr.keys import new_key_id
from keymgr.records import (
    APPLICATION_IDS,
    KEY_IDS,
    SUBSCRIPTION_IDS,
    application_subscriptions,
    find_subscription,
    pack_application,
    pack_key,
    unpack_key,
)
from keymgr.snapshot import KeySnapshot
from tollway import schema


def test_ids_in_the_formats_pack_into_ints() -> None:
    for _ in range(200):
        for codec, value in (
            (KEY_IDS, new_key_id()),
            (APPLICATION_IDS, schema.new_id("app")),
            (SUBSCRIPTION_IDS, schema.new_id("sub")),
        ):
            code = codec.encode(value)
            assert isinstance(code, int)
            assert codec.decode(code) == value
    assert APPLICATION_IDS.decode(APPLICATION_IDS.encode("app_aaaaaaaaaaaa")) == "app_aaaaaaaaaaaa"
    assert KEY_IDS.decode(KEY_IDS.encode("777777777777")) == "777777777777"


def test_ids_outside_the_formats_stay_strings() -> None:
    for value in (
        "",
        "app_",
        "app_abcdefghijkl",
        "app_ABCDEFGHIJKM",
        "app_abcdefghijk0",
        "app_+bcdefghijkm",
        "app_\u0663bcdefghijkm",
        "app_ abcdefghijk",
        "app_abcdefghijkmn",
        "sub_abcdefghijkm",
    ):
        assert APPLICATION_IDS.encode(value) == value
    for value in ("k1", "ABCDEFGHIJKL", "abcdefghijk1", "abcdefghij_k", "abcdefghijklm"):
        assert KEY_IDS.encode(value) == value


@given(st.text(max_size=20))
def test_any_id_round_trips(value: str) -> None:
    for codec in (KEY_IDS, APPLICATION_IDS, SUBSCRIPTION_IDS):
        assert codec.decode(codec.encode(value)) == value


@given(
    st.one_of(st.text(max_size=20), st.just(schema.new_id("app"))),
    st.binary(min_size=0, max_size=40),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)
def test_key_rows_round_trip(
    application_id: str, key_hash: bytes, expires: int | None, revoked: int | None
) -> None:
    assert unpack_key(pack_key(application_id, key_hash, expires, revoked)) == (
        application_id,
        key_hash,
        expires,
        revoked,
    )


def test_application_rows_round_trip_and_find_each_subscription() -> None:
    subscriptions = [
        (0, SUBSCRIPTION_IDS.encode(schema.new_id("sub")), 3, 1),
        (70_000, "sub-by-hand", 2, 0),
        (2, SUBSCRIPTION_IDS.encode(schema.new_id("sub")), 80_000, 3),
    ]
    record = pack_application(3, subscriptions)
    assert record[0] == 3
    assert list(application_subscriptions(record)) == subscriptions
    for fields in subscriptions:
        assert find_subscription(record, fields[0]) == fields
    assert find_subscription(record, 1) is None
    single = pack_application(1, subscriptions[:1])
    assert list(application_subscriptions(single)) == subscriptions[:1]
    assert find_subscription(single, 0) == subscriptions[0]
    assert find_subscription(single, 2) is None


def test_a_subscription_without_its_application_is_not_an_application() -> None:
    subscription = SubscriptionEntry("sub_1", "app_1", "api_1", "plan_1", "ACTIVE")
    snapshot = KeySnapshot.build(subscriptions=[subscription])
    assert "app_1" not in snapshot.applications and len(snapshot.applications) == 0
    assert snapshot.subscriptions[("app_1", "api_1")] == subscription
    snapshot.set_application("app_1", True)
    assert snapshot.applications["app_1"].deleted and len(snapshot.applications) == 1
    snapshot.set_subscription("sub_1", ("app_1", "api_1"), None)
    snapshot.set_application("app_1", None)
    assert not snapshot.application_records and not snapshot.subscriptions
