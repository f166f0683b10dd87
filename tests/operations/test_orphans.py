"""Files whose end readout never comes: the sweep, its metric, `dtm inspect` and `dtm status`."""
from __future__ import annotations

import threading

from dtm.common import keys
from dtm.common.settings import Settings
from dtm.worker import orphans
from prometheus_client import REGISTRY

from dtm.embedded import wait_until
from dtm.status import assess, format_text, gather

from .conftest import ENVIRONMENT

S = 1764828000.0  # first file seen: 2025-12-04T06:00:00Z, observing day 2025-12-03
DAY = "2025-12-03"
GRACE = 900.0


def orphaned_files(day: str = DAY) -> float:
    return REGISTRY.get_sample_value("dtm_orphaned_files_total", {"day": day}) or 0.0


def unclaimed(world) -> list[str]:
    return [member.decode() for member in world.connection.zrange(keys.unclaimed_images(), 0, -1)]


def test_files_without_end_readout_are_reported_once_after_the_grace_time(world):
    image = world.image_name(501)
    files = world.files(image)
    world.ingest([(key, S + 0.5) for key in files[:4]], seen_at=S + 1)
    before = orphaned_files()

    assert orphans.sweep(world.store, world.settings, now=S + GRACE) == []  # within the grace time
    assert unclaimed(world) == [image]
    message = world.cli("inspect", image, expect=1).output
    assert "4 file(s) seen but no end readout yet" in message

    [reported] = orphans.sweep(world.store, world.settings, now=S + GRACE + 2)
    assert reported["image_name"] == image and reported["files"] == 4 and reported["day_obs"] == DAY
    assert orphaned_files() == before + 4 and unclaimed(world) == []
    assert orphans.sweep(world.store, world.settings, now=S + GRACE + 60) == []
    assert orphaned_files() == before + 4

    # No end readout, so no exposure record (contract section 7): one line saying what dtm knows.
    shown = world.cli("inspect", image, "--json", expect=1)
    assert shown.exit_code != 0
    assert f"{image}: orphaned: 4 file(s) from 2025-12-04T06:00:00.500Z" in shown.output
    assert len(shown.output.strip().splitlines()) == 1

    # Two more files arrive an hour later: counted then, and only they.
    world.ingest([(key, S + 3600) for key in files[4:]], seen_at=S + 3600)
    assert orphans.sweep(world.store, world.settings, now=S + 3600 + GRACE / 2) == []
    [again] = orphans.sweep(world.store, world.settings, now=S + 3600 + GRACE + 1)
    assert again["files"] == 6 and again["declared_at"] == reported["declared_at"]
    assert orphaned_files() == before + 6

    snapshot = gather(world.settings, world.connection, now=S + 3600 + GRACE + 5, check_kafka=False)
    assert [o["image_name"] for o in snapshot["orphans"]] == [image]
    assert snapshot["last_seen"]["orphan_sweep"]["age_seconds"] == 4
    assert f"{image}  6 file(s)" in format_text(snapshot, assess(snapshot))


def test_claimed_and_unmonitored_images_are_not_orphans(world):
    settings = Settings.from_env({**ENVIRONMENT, "DTM_IMAGE_CONTROLLERS": "O"})
    late, other_controller = world.image_name(502), "MC_C_20251203_000503"
    world.schedule(late, S - 40, now=S)  # the readout came first ...
    world.ingest([(world.files(late)[0], S + 10)], seen_at=S + 10)  # ... a file after it: unclaimed again
    world.ingest([(f"LSSTCam/20251203/{other_controller}/{other_controller}_R22_S11.fits", S)], seen_at=S)
    world.ingest([("LSSTCam/20251203/MC_O_20251203_000504/MC_O_20251203_000504_R22_S11.fits", S)], seen_at=S)
    before = orphaned_files()

    reported = orphans.sweep(world.store, settings, now=S + 2 * GRACE)
    assert [r["image_name"] for r in reported] == ["MC_O_20251203_000504"]
    assert unclaimed(world) == [] and orphaned_files() == before + 1
    assert world.cli_json("inspect", late)["status"] == "pending"  # its decision is still to come


def test_one_sweep_per_interval_across_workers_and_the_thread_keeps_going(world, monkeypatch):
    assert orphans.sweep_if_leased(world.store, world.settings, "worker-a", now=S) == []
    assert orphans.sweep_if_leased(world.store, world.settings, "worker-b", now=S) is None
    world.connection.delete(keys.orphan_sweep_lease(), keys.last_seen("orphan_sweep"))

    calls = []
    real_sweep = orphans.sweep

    def flaky_sweep(store, settings, now=None):
        calls.append(now)
        world.connection.delete(keys.orphan_sweep_lease())  # let the next interval sweep at once
        if len(calls) == 1:
            raise RuntimeError("a bug in one sweep")
        return real_sweep(store, settings, now)

    monkeypatch.setattr(orphans, "sweep", flaky_sweep)
    stop = threading.Event()
    thread = orphans.start_sweeper(world.store, world.settings, "worker-a", stop=stop, interval=0.01)
    try:
        wait_until(lambda: world.connection.exists(keys.last_seen("orphan_sweep")), 10, "a sweep after a failed one")
    finally:
        stop.set()
        thread.join(5)
    assert len(calls) >= 2 and not thread.is_alive()
