"""The Redis key layout.

Every per-exposure key carries the image name as a hash tag (`{MC_O_20251203_000123}`) so that an
exposure's keys live on one Redis Cluster slot and can be read and written in one transaction.
Every key gets a TTL (`REDIS_KEY_TTL`), so memory is bounded whatever happens to the jobs.
"""
from __future__ import annotations

_PREFIX = "dtm"


def _exposure(image_name: str, what: str) -> str:
    return f"{_PREFIX}:{{{image_name}}}:{what}"


def arrivals(image_name: str) -> str:
    """Sorted set: member = object key, score = latest notification eventTime (UTC unix seconds)."""
    return _exposure(image_name, "arrivals")


def readout(image_name: str) -> str:
    """String: the EndReadout as JSON."""
    return _exposure(image_name, "readout")


def decision(image_name: str) -> str:
    """String: the decision record as JSON (what `dtm inspect` shows)."""
    return _exposure(image_name, "decision")


def observed(image_name: str) -> str:
    """String flag set once, when the exposure's metrics were recorded: metrics count it once."""
    return _exposure(image_name, "observed")


def transfer_summary(image_name: str) -> str:
    """String: the camera's latest fileTransferPerImageSummary as JSON."""
    return _exposure(image_name, "camera_summary")


def camera_disagreement(image_name: str) -> str:
    """String flag set once, when the camera's transfer summary and dtm's decision disagree: counted once."""
    return _exposure(image_name, "camera_disagreement")


def day_index(day_obs: str) -> str:
    """Sorted set of the day's exposures: member = image name, score = end of readout (UTC)."""
    return f"{_PREFIX}:day:{day_obs}"


def unclaimed_images() -> str:
    """Sorted set of images that have files but no end readout yet: score = first file seen (UTC)."""
    return f"{_PREFIX}:unclaimed"


def last_seen(stream: str) -> str:
    """String: UTC unix seconds of the last message handled on a stream (for `dtm status`)."""
    return f"{_PREFIX}:last_seen:{stream}"


def decide_job_id(image_name: str) -> str:
    """RQ job id of an exposure's decision: one per exposure, so a redelivered readout adds nothing."""
    return f"decide-{image_name}"


def recheck_job_id(image_name: str) -> str:
    return f"recheck-{image_name}"


def recheck(image_name: str) -> str:
    """String: the second look at T0 + RECHECK_TIME as JSON; set once (NX), so it is counted once."""
    return _exposure(image_name, "recheck")


def orphan(image_name: str) -> str:
    """String: files with no end readout within ORPHAN_GRACE_TIME, as JSON (`dtm inspect` shows `orphaned`)."""
    return _exposure(image_name, "orphan")


def orphans() -> str:
    """Sorted set of orphaned images: member = image name, score = first file seen (UTC)."""
    return f"{_PREFIX}:orphans"


def orphan_sweep_lease() -> str:
    """String with a short TTL: held by the worker that sweeps for orphans this interval."""
    return f"{_PREFIX}:orphan_sweep_lease"
