"""What `dtm inspect` shows of one exposure: the stored decision, or `pending` before it."""
from __future__ import annotations

from dtm.common import time as ttime
from dtm.common.objectkey import is_data_file
from dtm.common.store import ExposureStore
from dtm.worker.decision import PENDING
from dtm.worker.orphans import stored_orphan
from dtm.worker.recheck import stored_recheck


class UnknownExposure(LookupError):
    pass


def exposure_record(store: ExposureStore, image_name: str) -> dict:
    """The contract's `dtm inspect --json` object (plus the camera's own summary when stored)."""
    record = store.decision(image_name)
    if record is None:
        readout = store.readout(image_name)
        if readout is None:
            return _without_readout(store, image_name)
        record = {
            "image_name": image_name,
            "instrument": readout.instrument,
            "day_obs": readout.day_obs,
            "end_readout_utc": ttime.isoformat(readout.end_readout_utc),
            "status": PENDING,
            "expected_files": None,
            "arrived_files": _data_files_seen(store, image_name),
            "late_files": [],
            "missing_files": [],
            "transfer_time_seconds": None,
            "last_file": None,
        }
    camera = store.transfer_summary(image_name)
    if camera is not None:
        record["camera_summary"] = camera
    for name, value in (("recheck", stored_recheck(store, image_name)), ("orphan", stored_orphan(store, image_name))):
        if value is not None:  # the second look at RECHECK_TIME; files seen before a late end readout
            record[name] = value
    return record


def _without_readout(store: ExposureStore, image_name: str) -> dict:
    """Files but no end readout: no exposure record (the contract's statuses need an end readout).

    Raises UnknownExposure with one line that says what dtm knows: orphaned files, or files waiting.
    """
    orphan = stored_orphan(store, image_name)
    if orphan is not None:
        raise UnknownExposure(
            f"{image_name}: orphaned: {orphan['files']} file(s) from {orphan['first_file_utc']} to "
            f"{orphan['last_file_utc']} (day_obs {orphan['day_obs']}) and no end readout")
    files = len(store.arrivals(image_name))
    if files:
        raise UnknownExposure(f"{image_name}: {files} file(s) seen but no end readout yet "
                              "(reported as orphaned after ORPHAN_GRACE_TIME)")
    raise UnknownExposure(f"dtm has no record of {image_name} (never seen, or older than REDIS_KEY_TTL)")


def _data_files_seen(store: ExposureStore, image_name: str) -> int:
    """Data files notified so far (not the expected-sensors object): the progress of a pending exposure."""
    return sum(1 for key in store.arrivals(image_name) if is_data_file(key))


def _or_unknown(value) -> str:
    return "?" if value is None else str(value)


def format_text(record: dict) -> str:
    transfer = record["transfer_time_seconds"]
    lines = [
        f"{record['image_name']}  ({record['instrument']}, day_obs {record['day_obs']})",
        f"  status            {record['status']}",
        f"  end of readout    {record['end_readout_utc']}",
        f"  transfer time     {'-' if transfer is None else f'{transfer:.3f} s'}"
        + (f"  (last file {record['last_file']})" if record.get("last_file") else ""),
        f"  files             {record['arrived_files']} arrived of {_or_unknown(record['expected_files'])} expected"
        + ("" if record.get("expected_sensors_found", True) else "  (no expected-sensors object: files found count)"),
        f"  late              {len(record['late_files'])}",
    ]
    lines += [f"    {key}" for key in record["late_files"]]
    lines.append(f"  missing           {len(record['missing_files'])}")
    lines += [f"    {key}" for key in record["missing_files"]]
    lines += _operations_lines(record)
    camera = record.get("camera_summary")
    if camera:
        lines += _camera_lines(record, camera)
    return "\n".join(lines)


def _camera_lines(record: dict, camera: dict) -> list[str]:
    """The camera's fileTransferPerImageSummary next to dtm's own counts."""
    def get(name: str) -> str:
        return _or_unknown(camera.get(name))

    dtm_missing = len(record["missing_files"]) if record["expected_files"] is not None else None
    rows = [("expected files", camera.get("expected"), record["expected_files"]),
            ("missing files", camera.get("missingAfterResend"), dtm_missing)]
    lines = [f"  camera summary    written {get('written')}, transferred {get('transferredBeforeResend')} before "
             f"{get('resendCount')} resend(s) and {get('transferredAfterResend')} after"
             + (f"  (sent {ttime.isoformat(ttime.tai_to_utc(camera['private_sndStamp']))})"
                if isinstance(camera.get("private_sndStamp"), (int, float)) else ""),
             f"  {'':18}{'camera':>8}  {'dtm':>8}"]
    for label, camera_value, dtm_value in rows:
        mark = "" if dtm_value is None or camera_value == dtm_value else "  <- disagree"
        lines.append(f"    {label:16}{_or_unknown(camera_value):>8}  {_or_unknown(dtm_value):>8}{mark}")
    return lines


def _operations_lines(record: dict) -> list[str]:
    lines = []
    recheck = record.get("recheck")
    if recheck:
        lines.append(f"  after the window  {len(recheck['arrived_after_window'])} arrived by {recheck['cutoff_utc']} "
                     f"(RECHECK_TIME {recheck['recheck_time_seconds']:g} s), "
                     f"{len(recheck['still_missing'])} still missing")
        delays = recheck.get("arrival_after_end_readout_seconds", {})
        lines += [f"    {key}  (+{delays.get(key, 0):.1f} s)" for key in recheck["arrived_after_window"]]
    orphan = record.get("orphan")
    if orphan:
        lines.append(f"  orphaned          {orphan['files']} file(s) from {orphan['first_file_utc']} to "
                     f"{orphan['last_file_utc']} with no end readout (reported {orphan['declared_at']})")
    return lines
