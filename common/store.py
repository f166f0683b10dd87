"""What dtm keeps in Redis about each exposure, behind one small API.

Layout in `keys.py`. Every write sets a TTL, so Redis memory stays bounded.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import orjson
import redis

from . import keys
from .models import EndReadout, FileArrival


class ExposureStore:
    def __init__(self, connection: redis.Redis, ttl_seconds: int):
        self.redis = connection
        self.ttl = ttl_seconds

    # -- written by ingest -------------------------------------------------------------------
    def add_arrivals(self, arrivals: Iterable[FileArrival], seen_at: float) -> None:
        """Store a batch of notifications in one round trip.

        ZADD GT keeps the latest eventTime per key: a resent file's arrival is its latest upload,
        and a redelivered notification changes nothing.
        """
        by_image: dict[str, dict[str, float]] = defaultdict(dict)
        for arrival in arrivals:
            members = by_image[arrival.image_name]
            key = arrival.object_key.key
            members[key] = max(arrival.event_time, members.get(key, arrival.event_time))
        pipe = self.redis.pipeline(transaction=False)
        for image_name, members in by_image.items():
            arrivals_key = keys.arrivals(image_name)
            pipe.zadd(arrivals_key, members, gt=True)
            pipe.expire(arrivals_key, self.ttl)
            # Remember when an image's files were first seen, to find files whose readout never comes.
            pipe.zadd(keys.unclaimed_images(), {image_name: seen_at}, nx=True)
        if by_image:
            pipe.expire(keys.unclaimed_images(), self.ttl)
        pipe.set(keys.last_seen("file_notifications"), seen_at, ex=self.ttl)
        pipe.execute()

    def arrivals(self, image_name: str) -> dict[str, float]:
        members = self.redis.zrange(keys.arrivals(image_name), 0, -1, withscores=True)
        return {member.decode(): score for member, score in members}

    # -- written by the scheduler ------------------------------------------------------------
    def save_readout(self, readout: EndReadout, seen_at: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.readout(readout.image_name), readout.to_json(), ex=self.ttl)
        pipe.zadd(keys.day_index(readout.day_obs), {readout.image_name: readout.end_readout_utc})
        pipe.expire(keys.day_index(readout.day_obs), self.ttl)
        pipe.zrem(keys.unclaimed_images(), readout.image_name)
        pipe.set(keys.last_seen("end_readouts"), seen_at, ex=self.ttl)
        pipe.execute()

    def readout(self, image_name: str) -> EndReadout | None:
        data = self.redis.get(keys.readout(image_name))
        return None if data is None else EndReadout.from_json(data)

    def images_of_day(self, day_obs: str) -> list[str]:
        return [member.decode() for member in self.redis.zrange(keys.day_index(day_obs), 0, -1)]

    def images_between(self, day_obs_list: Iterable[str], start_utc: float, end_utc: float) -> list[str]:
        found = []
        for day_obs in day_obs_list:
            found += [m.decode() for m in self.redis.zrangebyscore(keys.day_index(day_obs), start_utc, end_utc)]
        return found

    # -- written by workers ------------------------------------------------------------------
    def save_decision(self, record: dict) -> bool:
        """Store the decision; True the first time this exposure is decided.

        The caller records metrics only on True: an exposure is observed once, however often
        its job runs.
        """
        image_name = record["image_name"]
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.observed(image_name), 1, nx=True, ex=self.ttl)
        pipe.set(keys.decision(image_name), orjson.dumps(record), ex=self.ttl)
        first_time, _ = pipe.execute()
        return bool(first_time)

    def decision(self, image_name: str) -> dict | None:
        data = self.redis.get(keys.decision(image_name))
        return None if data is None else orjson.loads(data)

    def save_transfer_summary(self, image_name: str, summary: dict) -> bool:
        """Keep the camera's latest summary (highest `private_sndStamp`); False if a later one is stored.

        The camera may send several per image (after each resend); they may arrive out of order.
        """
        key = keys.transfer_summary(image_name)
        stamp = _send_stamp(summary)

        def keep_latest(pipe) -> bool:
            current = pipe.get(key)
            if current is not None and _send_stamp(orjson.loads(current)) > stamp:
                return False
            pipe.multi()
            pipe.set(key, orjson.dumps(summary), ex=self.ttl)
            return True

        return self.redis.transaction(keep_latest, key, value_from_callable=True)

    def transfer_summary(self, image_name: str) -> dict | None:
        data = self.redis.get(keys.transfer_summary(image_name))
        return None if data is None else orjson.loads(data)

    def was_observed(self, image_name: str) -> bool:
        return bool(self.redis.exists(keys.observed(image_name)))

    def mark_camera_disagreement(self, image_name: str) -> bool:
        """True the first time the camera's summary and dtm's decision are found to disagree."""
        return bool(self.redis.set(keys.camera_disagreement(image_name), 1, nx=True, ex=self.ttl))


def _send_stamp(summary: dict) -> float:
    try:
        return float(summary.get("private_sndStamp"))
    except (TypeError, ValueError):
        return float("-inf")
