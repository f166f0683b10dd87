"""The second look at T0 + RECHECK_TIME: scheduled by the decision, counted once, shown by `dtm inspect`."""
from __future__ import annotations

import math

from dtm.common import keys
from dtm.worker.decision import Decision
from dtm.worker.recheck import RECHECK_JOB, run_recheck, schedule_recheck, second_look
from prometheus_client import REGISTRY
from rq import Queue, SimpleWorker
from rq.job import Job

from .conftest import RECHECK, WAIT

T0 = 1764828000.0  # 2025-12-04T06:00:00Z, observing day 2025-12-03
DAY = "2025-12-03"


def counters(day: str) -> dict:
    names = ("dtm_s3_arrived_after_window_total", "dtm_s3_missing_after_recheck_total", "dtm_s3_late_or_missing_total",
             "dtm_s3_transfer_duration_seconds_count")
    return {name: REGISTRY.get_sample_value(name, {"day": day}) or 0.0 for name in names}


def test_second_look_splits_the_missing_files_at_the_cutoff():
    arrivals = {"a": 100 + 45, "b": 100 + 600, "c": 100 + 600.5, "on_time": 100 + 3}
    result = second_look(end_readout_utc=100, missing_files=["a", "b", "c", "d"], arrivals=arrivals,
                         wait_time=30, recheck_time=600)
    assert result["arrived_after_window"] == ["a", "b"]  # at the cut-off counts
    assert result["still_missing"] == ["c", "d"]
    assert result["arrival_after_end_readout_seconds"] == {"a": 45, "b": 600}
    # Without an expected-sensors object, data files after the window are reported as late arrivals.
    loose = second_look(end_readout_utc=100, missing_files=[], arrivals=arrivals, wait_time=30, recheck_time=600,
                        expected_sensors_found=False, is_data_file=lambda key: key != "b")
    assert loose["arrived_after_window"] == ["a"] and loose["still_missing"] == []


def test_recheck_is_scheduled_stored_and_counted_once(world):
    image, complete = world.image_name(401), world.image_name(402)
    files = world.files(image)
    for name in (image, complete):
        world.put_expected_sensors(name, T0 - 5)
        for key in world.files(name)[:4]:
            world.put(key, T0 + 4)
    world.put(world.files(complete)[4], T0 + 5)
    world.put(world.files(complete)[5], T0 + 5)
    for name in (image, complete):
        world.schedule(name, T0, now=T0 + 1)
        world.decide(name)
    decision = world.store.decision(image)
    assert decision["missing_files"] == files[4:]

    # T0 + RECHECK_TIME is in the past here, so the decision job queued its recheck at once ...
    assert Job.exists(keys.recheck_job_id(image), connection=world.connection)
    assert not Job.exists(keys.recheck_job_id(complete), connection=world.connection)  # nothing to look for
    # ... and while T0 + RECHECK_TIME is ahead, it is scheduled then (once: the job id is unique).
    Job.fetch(keys.recheck_job_id(image), connection=world.connection).delete()
    context = world.context()
    assert schedule_recheck(context, Decision.from_record(decision), now=T0 + WAIT + 1)
    assert not schedule_recheck(context, Decision.from_record(decision), now=T0 + WAIT + 2)
    scheduled = Queue(world.settings.queue_name, connection=world.connection).scheduled_job_registry
    assert scheduled.get_scheduled_time(keys.recheck_job_id(image)).timestamp() == math.ceil(T0 + RECHECK)

    world.put(files[4], T0 + WAIT + 50)  # arrives after the window, before RECHECK_TIME
    before = counters(DAY)
    result = run_recheck(world.context(), image, now=T0 + RECHECK + 2)
    assert result["arrived_after_window"] == [files[4]] and result["still_missing"] == [files[5]]
    assert result["arrival_after_end_readout_seconds"] == {files[4]: WAIT + 50}
    after = counters(DAY)
    assert after["dtm_s3_arrived_after_window_total"] == before["dtm_s3_arrived_after_window_total"] + 1
    assert after["dtm_s3_missing_after_recheck_total"] == before["dtm_s3_missing_after_recheck_total"] + 1
    # The decision's own metrics and record keep their meaning.
    assert after["dtm_s3_late_or_missing_total"] == before["dtm_s3_late_or_missing_total"]
    assert after["dtm_s3_transfer_duration_seconds_count"] == before["dtm_s3_transfer_duration_seconds_count"]
    assert world.store.decision(image) == decision

    world.put(files[5], T0 + RECHECK - 1)  # seen by a second run, which changes nothing: stored once
    assert run_recheck(world.context(), image, now=T0 + RECHECK + 60) == result
    assert counters(DAY) == after

    shown = world.cli_json("inspect", image)
    assert shown["status"] == "incomplete" and shown["missing_files"] == files[4:]
    assert shown["recheck"]["arrived_after_window"] == [files[4]]
    text = world.cli("inspect", image).output
    assert "after the window  1 arrived" in text and "1 still missing" in text


def test_the_recheck_job_runs_in_an_rq_worker(world):
    image = world.image_name(403)
    world.put_expected_sensors(image, T0 - 5)
    world.schedule(image, T0, now=T0 + 1)
    assert world.decide(image)["status"] == "no_files"
    queue = Queue(world.settings.queue_name, connection=world.connection)
    queue.empty()
    queue.enqueue(RECHECK_JOB, image)
    assert SimpleWorker([queue], connection=world.connection).work(burst=True)
    assert len(world.cli_json("inspect", image)["recheck"]["still_missing"]) == 6
