"""`dtm replay`: re-deciding stored exposures, idempotence, and feeding a capture file."""
from __future__ import annotations

import orjson
from dtm.common import keys
from dtm.common import time as ttime
from prometheus_client import REGISTRY

from .conftest import END_READOUT_TOPIC, NOTIFICATION_TOPIC, WAIT

T0 = 1764825149.0  # 2025-12-04T05:12:29Z, observing day 2025-12-03
DAY = "2025-12-03"


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def day_metrics(day: str) -> dict:
    return {
        "late_or_missing": sample("dtm_s3_late_or_missing_total", day=day),
        "transfers": sample("dtm_s3_transfer_duration_seconds_count", day=day),
        "transfer_sum": sample("dtm_s3_transfer_duration_seconds_sum", day=day),
        "incomplete": sample("dtm_exposures_decided_total", day=day, status="incomplete"),
        "complete": sample("dtm_exposures_decided_total", day=day, status="complete"),
    }


def night_of_s3(world, image_name: str, t0: float) -> list[str]:
    """In S3: four files on time, one late (T0 + 12 s), one after the window (T0 + 45 s)."""
    files = world.files(image_name)
    world.put_expected_sensors(image_name, t0 - 5)
    for key in files[:4]:
        world.put(key, t0 + 3)
    world.put(files[4], t0 + 12)
    world.put(files[5], t0 + 45)
    return files


def test_dry_run_changes_nothing_and_apply_counts_each_exposure_once(world):
    image = world.image_name(101)
    files = night_of_s3(world, image, T0)
    world.schedule(image, T0, now=T0 + 3600)  # stored, its decision job queued, no worker ran it
    before = day_metrics(DAY)

    dry = world.cli_json("replay", "--image", image)
    [outcome] = dry["exposures"]
    assert outcome["result"] == "decided" and outcome["changed"] is None and not outcome["counted"]
    assert outcome["decision"]["status"] == "incomplete"
    assert outcome["decision"]["late_files"] == [files[4]]
    assert outcome["decision"]["missing_files"] == [files[5]]  # arrived at T0 + 45 s: missing, as live
    assert outcome["decision"]["transfer_time_seconds"] == 12.0
    assert world.store.decision(image) is None and day_metrics(DAY) == before
    assert dry["summary"]["mode"] == "dry_run"

    applied = world.cli_json("replay", "--image", image, "--apply")
    assert applied["exposures"][0]["counted"] is True
    assert world.store.decision(image) == outcome["decision"]
    after_first = day_metrics(DAY)
    assert after_first["late_or_missing"] == before["late_or_missing"] + 2
    assert after_first["transfers"] == before["transfers"] + 1
    assert after_first["incomplete"] == before["incomplete"] + 1

    again = world.cli_json("replay", "--image", image, "--apply")
    assert again["exposures"][0]["counted"] is False and again["exposures"][0]["changed"] == []
    assert day_metrics(DAY) == after_first
    # The queued live job runs later: the exposure is observed already, it counts nothing either.
    assert world.decide(image) == outcome["decision"]
    assert day_metrics(DAY) == after_first
    text = world.cli("replay", "--image", image).output
    assert "(as stored)" in text and "Dry run" in text


def test_replay_rebuilds_arrivals_from_s3_and_names_an_expired_readout(world):
    image = world.image_name(102)
    files = night_of_s3(world, image, T0)
    world.ingest([(key, T0 + 2.5) for key in files[:5]], seen_at=T0 + 3)  # eventTimes differ from S3's
    world.schedule(image, T0, now=T0 + 1)
    live = world.decide(image)
    world.connection.delete(keys.arrivals(image))  # the notifications' TTL has passed

    replayed = world.cli_json("replay", "--image", image)["exposures"][0]
    assert replayed["decision"] == live and replayed["changed"] == []

    world.connection.delete(keys.readout(image))  # and now the end readout's
    result = world.cli("replay", "--image", image, "--image", "MC_O_20251203_999999", expect=1)
    assert result.output.count("NO READOUT") == 2
    assert "dtm replay --from" in result.output


def test_day_and_time_range_select_by_end_of_readout(world):
    early, late, next_night = world.image_name(201), world.image_name(202), world.image_name(1, "20251204")
    for image, t0 in ((early, T0), (late, T0 + 600), (next_night, T0 + 86400)):
        night_of_s3(world, image, t0)
        world.schedule(image, t0, now=t0 + 3600)

    by_day = world.cli_json("replay", "--day", DAY)
    assert [o["image_name"] for o in by_day["exposures"]] == [early, late]
    by_range = world.cli_json("replay", "--since", ttime.isoformat(T0 + 300),
                              "--until", ttime.isoformat(T0 + 86400 + 1).replace("Z", ""))  # no offset: UTC
    assert [o["image_name"] for o in by_range["exposures"]] == [late, next_night]
    assert world.cli("replay", "--day", DAY, "--image", early, expect=2).exit_code == 2  # one selection only
    assert "not an observing day" in world.cli("replay", "--day", "yesterday", expect=2).output


def test_a_capture_file_replays_to_the_live_decisions(world, tmp_path, monkeypatch):
    """The same messages through the live path (ingest, scheduler, worker) and through `--from`."""
    images = [world.image_name(301), world.image_name(302), world.image_name(303)]
    t0s = [T0, T0 + 40, T0 + 80]
    lines, notifications = [], []
    for index, (image, t0) in enumerate(zip(images, t0s)):
        files = world.files(image)
        world.put_expected_sensors(image, t0 - 5)  # only the expected-sensors object is listed in S3
        arrivals = {key: t0 + 2 + i * 0.25 for i, key in enumerate(files)}
        if index == 1:
            arrivals[files[0]] = t0 + 11  # late
            del arrivals[files[5]]  # never comes
        if index == 2:
            arrivals[files[2]] = t0 + WAIT + 5  # after the window
        notifications += list(arrivals.items())
    for offset, (key, at) in enumerate(notifications):
        lines.append({"topic": NOTIFICATION_TOPIC, "partition": 0, "offset": offset, "timestamp": int(at * 1000),
                      "value": world.notification(key, at).decode()})
    for offset, (image, t0) in enumerate(zip(images, t0s)):
        lines.append({"topic": END_READOUT_TOPIC, "partition": 0, "offset": offset, "timestamp": int(t0 * 1000),
                      "value": world.readout_message(image, t0).decode()})
    lines.append({"topic": NOTIFICATION_TOPIC, "value": "{not json"})  # rejected, counted, skipped
    other = "MC_C_20251203_000304"  # a controller this deployment does not monitor: not decided
    lines.append({"topic": END_READOUT_TOPIC, "value": orjson.loads(world.readout_message(other, T0))})
    capture = tmp_path / "night.jsonl"
    capture.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"this is not JSON\n")

    # Live: ingest stores the notifications, the scheduler the readouts, the worker decides.
    world.ingest(notifications, seen_at=T0 + 200)
    for image, t0 in zip(images, t0s):
        world.schedule(image, t0, now=T0 + 200)
    live = {image: world.decide(image) for image in images}
    assert [live[image]["status"] for image in images] == ["complete", "incomplete", "incomplete"]

    monkeypatch.setenv("DTM_IMAGE_CONTROLLERS", "O")
    dry = world.cli_json("replay", "--from", str(capture))  # into a scratch Redis
    assert {o["image_name"]: o["decision"] for o in dry["exposures"]} == live
    assert all(o["changed"] == [] for o in dry["exposures"])  # compared with the pipeline's store
    assert dry["summary"]["fed"] == {"lines": 23, "notifications": 18, "end_readouts": 4, "skipped": 1, "errors": 0}

    world.connection.flushall()  # a Redis that never saw the night (an outage): backfill it
    before = day_metrics(DAY)
    applied = world.cli_json("replay", "--from", str(capture), "--apply")
    assert {o["image_name"]: o["decision"] for o in applied["exposures"]} == live
    assert {image: world.store.decision(image) for image in images} == live
    assert day_metrics(DAY)["late_or_missing"] == before["late_or_missing"] + 3
    once = day_metrics(DAY)
    again = world.cli_json("replay", "--from", str(capture), "--apply")
    assert not any(o["counted"] for o in again["exposures"])
    assert day_metrics(DAY)["late_or_missing"] == once["late_or_missing"]
    assert day_metrics(DAY)["transfers"] == once["transfers"]
