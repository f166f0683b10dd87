"""`dtm status`: exit code 0 when healthy, 1 when something needs attention."""
from __future__ import annotations

import time

from dtm.common import keys
from dtm.common import time as ttime
from rq import Queue, SimpleWorker

from dtm.embedded import free_port


def fail_on_purpose() -> None:
    raise ValueError("S3 answered 503 Slow Down")


def test_healthy(world):
    worker = SimpleWorker([Queue(world.settings.queue_name, connection=world.connection)], connection=world.connection,
                          name="dtm-worker-1")
    worker.register_birth()
    world.connection.set(keys.last_seen("file_notifications"), time.time() - 5)
    status = world.cli_json("status", "--no-kafka")
    assert status["healthy"] is True and status["problems"] == []
    assert [w["name"] for w in status["queue"]["workers"]] == ["dtm-worker-1"]
    assert 4 <= status["last_seen"]["file_notifications"]["age_seconds"] < 60
    assert status["last_seen"]["end_readouts"]["age_seconds"] is None
    text = world.cli("status", "--no-kafka").output
    assert text.startswith("dtm status at") and ": OK" in text.splitlines()[0] and "dtm-worker-1" in text

    world.connection.set(keys.last_seen("end_readouts"), time.time() - 3600)
    silent = world.cli_json("status", "--no-kafka", "--max-silence", "600", expect=1)
    assert silent["problems"] == ["no end readouts message for 3600 s (limit 600 s)"]


def test_overdue_and_failed_jobs_and_no_worker(world):
    queue = Queue(world.settings.queue_name, connection=world.connection)
    now = time.time()
    queue.enqueue_at(ttime.to_datetime(now - 300), "dtm.worker.job.decide_exposure", "MC_O_20251203_000001",
                     job_id="decide-MC_O_20251203_000001")
    queue.enqueue_at(ttime.to_datetime(now + 30), "dtm.worker.job.decide_exposure", "MC_O_20251203_000002")
    status = world.cli_json("status", "--no-kafka", expect=1)
    assert status["queue"]["scheduled"] == 2 and status["queue"]["overdue"] == 1
    assert status["queue"]["overdue_jobs"] == ["decide-MC_O_20251203_000001"]
    assert status["queue"]["next_due_in_seconds"] < -299  # the overdue one comes first
    problems = " | ".join(status["problems"])
    assert "no live worker" in problems and "1 scheduled job(s) overdue" in problems

    queue.scheduled_job_registry.remove("decide-MC_O_20251203_000001", delete_job=True)
    queue.enqueue(fail_on_purpose, job_id="broken-job")
    worker = SimpleWorker([queue], connection=world.connection, name="dtm-worker-2")
    worker.work(burst=True)
    worker.register_birth()  # alive for the next look
    status = world.cli_json("status", "--no-kafka", expect=1)
    [failed] = status["queue"]["failed_jobs"]
    assert failed["id"] == "broken-job" and failed["error"] == "ValueError: S3 answered 503 Slow Down"
    assert status["problems"] == ["1 job(s) failed in the last 3600 s; latest broken-job: "
                                  "ValueError: S3 answered 503 Slow Down"]
    assert world.cli_json("status", "--no-kafka", "--failed-window", "0", expect=0)["healthy"]


def test_redis_down(world, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    result = world.cli("status", "--no-kafka", expect=1)
    assert time.monotonic() - started < 10
    assert "Redis unreachable" in result.output and "UNREACHABLE" in result.output
    assert "secret" not in result.output
