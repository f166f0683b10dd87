"""When S3 is too slow for the planned arrival times, uploads are moved out of the boundary zones, never
run inside them: the truth stays what dtm decides. A fake S3 (slow puts, whole-second LastModified) and
a fake producer keep this test free of services."""
from __future__ import annotations

import datetime as dt
import math
import threading
import time

from dtm.simulate import LEAD_MARGIN, SimulationConfig, run_simulation


class SlowS3:
    def __init__(self, put_seconds: float):
        self.put_seconds = put_seconds
        self.objects: dict[str, float] = {}  # key -> LastModified (whole seconds, as moto)
        self.puts: list[tuple[str, float]] = []  # (key, start)
        self.lock = threading.Lock()

    def put_object(self, Bucket, Key, Body):
        start = time.time()
        time.sleep(self.put_seconds)
        with self.lock:
            self.puts.append((Key, start))
            self.objects[Key] = math.floor(time.time())

    def get_paginator(self, operation):
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket, Prefix, **options):
        with self.lock:
            contents = [{"Key": key, "LastModified": dt.datetime.fromtimestamp(at, dt.timezone.utc)}
                        for key, at in sorted(self.objects.items()) if key.startswith(Prefix)]
        return [{"Contents": contents}]


class NoKafka:
    def produce(self, topic, value, on_delivery):
        pass

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return 0


def test_uploads_never_run_next_to_a_boundary(monkeypatch):
    monkeypatch.setattr("dtm.simulate.make_producer", lambda *args: NoKafka())
    s3 = SlowS3(put_seconds=0.2)
    config = SimulationConfig(exposures=1, sensors=3, uploaders=1, wait_time=3.0, late_time=2.5, seed=1)
    [truth] = run_simulation(config, bootstrap_servers="unused:1", s3_client=s3, notification_topic="n",
                             end_readout_topic="e", bucket="rubin-summit")
    t0 = truth["end_readout_tai"] - 37.0
    deferred = truth["faults"]["deferred"]
    assert deferred, "one uploader doing 0.2 s puts cannot fit 7 files in the on-time window"
    for key, start in s3.puts:
        for boundary in (t0 + config.late_time, t0 + config.wait_time):
            assert not boundary - LEAD_MARGIN < start < boundary + config.boundary_margin, (key, start - t0)
    # Held until T0 + wait + margin, the deferred files arrive after the window: missing, as dtm will see them.
    assert sorted(deferred) == truth["missing"]
    assert truth["status"] == "incomplete" and truth["late"] == []
