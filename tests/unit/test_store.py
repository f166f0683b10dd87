"""The Redis layout (fakeredis): latest arrival per key, TTLs everywhere, one hash tag per exposure."""
from __future__ import annotations

import re

from dtm.common import keys
from dtm.common.models import EndReadout, FileArrival
from dtm.common.objectkey import parse_object_key
from dtm.common.store import ExposureStore
from redis.crc import key_slot

TTL = 3600
IMAGE = "MC_O_20251203_000123"
OTHER = "MC_O_20251203_000124"
T0 = 1764825149.0


def arrival(image: str, sensor: str, at: float) -> FileArrival:
    key = f"LSSTCam/20251203/{image}/{image}_{sensor}.fits"
    return FileArrival(parse_object_key(key), at, "2025-12-03")


def key_of(image: str, sensor: str) -> str:
    return f"LSSTCam/20251203/{image}/{image}_{sensor}.fits"


def test_add_arrivals_keeps_the_latest_time(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    # Within one batch, the later of two notifications wins whatever their order.
    store.add_arrivals([arrival(IMAGE, "R22_S11", T0 + 5), arrival(IMAGE, "R22_S11", T0 + 3),
                        arrival(IMAGE, "R22_S12", T0 + 4)], seen_at=T0 + 6)
    assert store.arrivals(IMAGE) == {key_of(IMAGE, "R22_S11"): T0 + 5, key_of(IMAGE, "R22_S12"): T0 + 4}
    # A redelivered (older) notification changes nothing; a resend moves the time forward.
    store.add_arrivals([arrival(IMAGE, "R22_S11", T0 + 1), arrival(IMAGE, "R22_S12", T0 + 9.5)], seen_at=T0 + 10)
    assert store.arrivals(IMAGE) == {key_of(IMAGE, "R22_S11"): T0 + 5, key_of(IMAGE, "R22_S12"): T0 + 9.5}
    assert store.arrivals(OTHER) == {}


def test_arrivals_keep_microseconds(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    store.add_arrivals([arrival(IMAGE, "R22_S11", 1764825155.318204)], seen_at=T0)
    assert store.arrivals(IMAGE)[key_of(IMAGE, "R22_S11")] == 1764825155.318204


def fill(store: ExposureStore) -> None:
    store.add_arrivals([arrival(IMAGE, "R22_S11", T0 + 2), arrival(OTHER, "R22_S11", T0 + 3)], seen_at=T0 + 3)
    store.save_readout(EndReadout(IMAGE, "MC", "O", "20251203", T0 + 37), seen_at=T0 + 1)
    store.save_decision({"image_name": IMAGE, "status": "complete"})
    store.save_transfer_summary(IMAGE, {"expected": 410})


def test_every_key_has_a_ttl(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    fill(store)
    written = sorted(key.decode() for key in redis_connection.keys("dtm:*"))
    assert len(written) >= 8
    for key in written:
        assert 0 < redis_connection.ttl(key) <= TTL, key


def test_exposure_keys_share_the_hash_tag(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    fill(store)
    mine = [key.decode() for key in redis_connection.keys(f"*{IMAGE}*")]
    assert {keys.arrivals(IMAGE), keys.readout(IMAGE), keys.decision(IMAGE), keys.observed(IMAGE),
            keys.transfer_summary(IMAGE)} <= set(mine)
    for key in mine:
        assert re.fullmatch(rf"dtm:\{{{IMAGE}\}}:[a-z_]+", key), key
    assert len({key_slot(key.encode()) for key in mine}) == 1
    assert key_slot(keys.arrivals(IMAGE).encode()) != key_slot(keys.arrivals(OTHER).encode())


def test_readout_round_trip_and_day_index(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    readout = EndReadout(IMAGE, "MC", "O", "20251203", 1764825186.211875)
    store.add_arrivals([arrival(IMAGE, "R22_S11", T0)], seen_at=T0)
    assert redis_connection.zscore(keys.unclaimed_images(), IMAGE) == T0
    store.save_readout(readout, seen_at=T0 + 1)
    assert store.readout(IMAGE) == readout
    assert store.readout(OTHER) is None
    assert store.images_of_day("2025-12-03") == [IMAGE]
    assert store.images_between(["2025-12-03"], readout.end_readout_utc - 1, readout.end_readout_utc + 1) == [IMAGE]
    # The readout claims the image's files.
    assert redis_connection.zscore(keys.unclaimed_images(), IMAGE) is None


def test_save_decision_is_true_once(redis_connection):
    store = ExposureStore(redis_connection, TTL)
    assert not store.was_observed(IMAGE)
    assert store.save_decision({"image_name": IMAGE, "status": "incomplete"}) is True
    assert store.was_observed(IMAGE)
    assert store.save_decision({"image_name": IMAGE, "status": "complete"}) is False
    # The latest decision is what `dtm inspect` shows.
    assert store.decision(IMAGE) == {"image_name": IMAGE, "status": "complete"}
    assert store.save_decision({"image_name": OTHER, "status": "no_files"}) is True
    assert store.decision("MC_O_20251203_999999") is None
