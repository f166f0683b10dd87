"""The camera's own view of an image's transfer (`fileTransferPerImageSummary`) against dtm's.

The camera may send a summary several times per image (after each resend); dtm keeps the latest
(highest `private_sndStamp`). Once both the summary and dtm's decision exist, they are compared:
the camera's `expected` with dtm's `expected_files` and its `missingAfterResend` with dtm's
missing files. The comparison runs wherever the second of the two arrives: in the worker when the
summary came first, in the scheduler when the decision came first (each writes its own side, then
reads the other, so one of them always sees both). A disagreeing exposure is counted once
(`dtm_camera_disagreements_total{day}`, a Redis SET NX flag) and logged.
"""
from __future__ import annotations

import logging
import math

from . import metrics
from .models import Rejected
from .objectkey import is_image_name
from .store import ExposureStore

log = logging.getLogger(__name__)

STREAM = "transfer_summaries"
COUNTS = ("expected", "missingAfterResend")


def summary_from_fields(fields: dict) -> dict:
    """Validate a decoded fileTransferPerImageSummary (JSON or Avro); returns the fields to store."""
    for name in ("obsId", "private_sndStamp", *COUNTS):
        if name not in fields:
            raise Rejected("missing_field", f"fileTransferPerImageSummary lacks {name!r}")
    image_name = fields["obsId"]
    if not isinstance(image_name, str) or not is_image_name(image_name):
        raise Rejected("malformed", f"obsId {image_name!r} is not an image name")
    stamp = fields["private_sndStamp"]
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise Rejected("malformed", f"private_sndStamp {stamp!r}")
    for name in COUNTS:
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Rejected("malformed", f"{name} {value!r} is not a count")
    return dict(fields)


def image_source_and_controller(image_name: str) -> tuple[str, str]:
    """`MC_O_20251203_000123` -> ("MC", "O")."""
    source, controller = image_name.split("_")[:2]
    return source, controller


def compare(decision: dict, summary: dict) -> dict | None:
    """What differs between dtm's decision and the camera's summary; None when they agree."""
    if decision.get("expected_files") is None:  # not decided yet
        return None
    difference = {
        "camera_expected": summary["expected"],
        "dtm_expected": decision["expected_files"],
        "camera_missing": summary["missingAfterResend"],
        "dtm_missing": len(decision.get("missing_files") or ()),
    }
    if (difference["camera_expected"] == difference["dtm_expected"]
            and difference["camera_missing"] == difference["dtm_missing"]):
        return None
    return difference


def check(store: ExposureStore, decision: dict, summary: dict, *, where: str) -> bool:
    """Compare and, the first time this exposure disagrees, count and log it. True if counted now."""
    difference = compare(decision, summary)
    if difference is None:
        return False
    image_name, day = decision["image_name"], decision["day_obs"]
    if not store.mark_camera_disagreement(image_name):
        return False
    metrics.ensure_day_series(day)
    metrics.camera_disagreements.labels(day=day).inc()
    log.warning("the camera's transfer summary and dtm disagree", extra={
        "image_name": image_name, "day_obs": day, **difference,
        "camera_transferred": summary.get("transferredAfterResend"), "camera_resends": summary.get("resendCount"),
        "dtm_status": decision.get("status"), "compared_in": where})
    return True


def handle_summary(store: ExposureStore, summary: dict) -> bool:
    """Store a (validated) summary if it is the latest, then compare with the decision if there is one.

    Returns whether the stored summary changed. Compares even when it did not: a redelivered
    summary after a crash between the two steps still gets its comparison (counted once anyway).
    """
    image_name = summary["obsId"]
    stored = store.save_transfer_summary(image_name, summary)
    decision = store.decision(image_name)
    latest = store.transfer_summary(image_name)
    if decision is not None and latest is not None:
        check(store, decision, latest, where="scheduler")
    return stored
