"""`ReadoutScheduler.handle` on fakeredis (with Lua, for RQ's unique jobs)."""
from __future__ import annotations

import importlib.util

import pytest
from dtm.common import keys
from dtm.common.models import EndReadout
from dtm.scheduler.consumer import DECIDE_JOB, ReadoutScheduler
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

READOUT = EndReadout("MC_O_20251203_000123", "MC", "O", "20251203", 1764825186.211875)
T0 = 1764825149.211875  # its end of readout in UTC


@pytest.fixture
def scheduler(redis_connection, settings):
    assert importlib.util.find_spec("lupa"), "RQ's unique=True runs a Lua script: install 'fakeredis[lua]'"
    return ReadoutScheduler(settings, redis_connection)


def scheduled(scheduler: ReadoutScheduler) -> dict[str, float]:
    registry = ScheduledJobRegistry(queue=scheduler.queue)
    entries = scheduler.queue.connection.zrange(registry.key, 0, -1, withscores=True)
    return {job_id.decode(): score for job_id, score in entries}


def test_schedules_one_job_at_t0_plus_wait(scheduler, settings):
    assert READOUT.end_readout_utc == pytest.approx(T0, abs=1e-6)
    assert scheduler.handle(READOUT, now=T0 + 1.0) is True
    jobs = scheduled(scheduler)
    assert list(jobs) == [keys.decide_job_id(READOUT.image_name)] == ["decide-MC_O_20251203_000123"]
    due = T0 + settings.s3_wait_time
    # RQ keeps whole seconds: the job must not become due before T0 + W (nor a second after it).
    assert due <= jobs["decide-MC_O_20251203_000123"] < due + 1
    assert scheduler.queue.count == 0
    job = Job.fetch("decide-MC_O_20251203_000123", connection=scheduler.queue.connection)
    assert job.func_name == DECIDE_JOB
    assert job.args == (READOUT.image_name,)
    assert scheduler.store.readout(READOUT.image_name) == READOUT


def test_second_handle_adds_nothing(scheduler):
    assert scheduler.handle(READOUT, now=T0 + 1.0) is True
    before = scheduled(scheduler)
    assert scheduler.handle(READOUT, now=T0 + 2.0) is False
    assert scheduled(scheduler) == before
    assert scheduler.queue.count == 0
    # Even once the decision is due, a late redelivery enqueues nothing.
    assert scheduler.handle(READOUT, now=T0 + 3600.0) is False
    assert scheduler.queue.count == 0


def test_past_due_readout_is_enqueued_at_once(scheduler, settings):
    assert scheduler.handle(READOUT, now=T0 + settings.s3_wait_time + 0.5) is True
    assert scheduler.queue.count == 1
    assert scheduler.queue.job_ids == ["decide-MC_O_20251203_000123"]
    assert scheduled(scheduler) == {}
    assert scheduler.handle(READOUT, now=T0 + 7200.0) is False
    assert scheduler.queue.count == 1


def test_due_exactly_now_is_enqueued(scheduler, settings):
    assert scheduler.handle(READOUT, now=READOUT.end_readout_utc + settings.s3_wait_time) is True
    assert scheduler.queue.count == 1


def test_two_exposures_two_jobs(scheduler):
    other = EndReadout("MC_O_20251203_000124", "MC", "O", "20251203", 1764825226.0)
    assert scheduler.handle(READOUT, now=T0) is True
    assert scheduler.handle(other, now=T0) is True
    assert sorted(scheduled(scheduler)) == ["decide-MC_O_20251203_000123", "decide-MC_O_20251203_000124"]
    assert Queue(scheduler.settings.queue_name, connection=scheduler.queue.connection).count == 0
