"""Export jobs (DESIGN 10.7): asked for in a request, written by a worker, kept for a set time.

The row is the truth about a job; the queue only carries its id (compounding.jobs):

- `request` writes a `queued` row (one per identical request while it waits or runs: a second
  one is answered with it) and puts its id on the queue. A queue that is down loses nothing:
  the row waits and `recover` puts it on the queue again.
- `claim` moves it to `running` in one UPDATE, so two workers handed the same id (a retry, a
  recovery) never both write it. The worker writes a heartbeat with the rows written so far.
- `finish` leaves it `done`, its workbook in the file store until `expires_at`; `fail` leaves
  it `failed` with a message. `expire_due` deletes the file at its time and marks it `expired`
  (a late download answers 410).
- `recover` queues again a running job whose worker went quiet (it stopped: a restart, a crash)
  and re-runs it from the start, at most JOBS_MAX_ATTEMPTS times; and puts again on the queue a
  job left waiting longer than that (its enqueue was lost).
"""

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import jobs, storage
from ..extensions import db
from ..models import ExportJob, User
from ..models.job import EXPORT_KIND_TEXT, LIVE_STATUSES
from . import audit
from .clock import utcnow
from .errors import Gone, InvalidState, NotFound, Unavailable
from .transaction import transaction

log = logging.getLogger(__name__)


def request_key(user_id: int, kind: str, params: dict) -> str:
    text = json.dumps({"user": user_id, "kind": kind, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Requested:
    job: ExportJob
    created: bool  # False: an identical request was already waiting or running, and this is it


def live_job(key: str) -> ExportJob | None:
    return db.session.scalar(sa.select(ExportJob).where(ExportJob.request_key == key,
                                                        ExportJob.status.in_(LIVE_STATUSES)))


def request(user: User, kind: str, params: dict, *, filename: str, rows_expected: int | None = None) -> Requested:
    """Queue an export of `kind` for `user` (params already checked), or find the identical one waiting."""
    key = request_key(user.id, kind, params)
    found = live_job(key)
    if found is not None:
        return Requested(found, False)
    try:
        with transaction():
            job = ExportJob(kind=kind, params=json.dumps(params, sort_keys=True), request_key=key,
                            status="queued", requested_by_id=user.id, rows_expected=rows_expected,
                            filename=filename)
            db.session.add(job)
            db.session.flush()
            audit.record(user, "export.requested", "export_job", job.id,
                         new={"kind": kind, "params": params, "rows_expected": rows_expected})
    except IntegrityError:
        # The same request, at the same moment, from another tab or server: answer with that one.
        found = live_job(key)
        if found is None:
            raise
        return Requested(found, False)
    with contextlib.suppress(jobs.QueueUnavailable):  # the row waits; recover() puts it on the queue again
        jobs.enqueue("export.run", job.id)
    return Requested(job, True)


def params_of(job: ExportJob) -> dict:
    return json.loads(job.params)


def sites_of(job: ExportJob) -> frozenset[int] | None:
    """The sites a written workbook covers (None: the whole chain, or a kind not bound to sites)."""
    return None if job.site_ids is None else frozenset(json.loads(job.site_ids))


def claim(job_id: int, now: datetime | None = None) -> ExportJob | None:
    """Move a queued job to running for this worker; None when it is not waiting (taken, done, expired)."""
    now = now or utcnow()
    with transaction():
        taken = db.session.execute(
            sa.update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.status == "queued")
            .values(status="running", started_at=now, heartbeat_at=now, attempts=ExportJob.attempts + 1,
                    rows_written=0, error="")
            .execution_options(synchronize_session=False)).rowcount
        if taken:
            attempt = db.session.scalar(sa.select(ExportJob.attempts).where(ExportJob.id == job_id))
            audit.record(None, "export.started", "export_job", job_id, new={"attempt": attempt, "started_at": now})
    if not taken:
        return None
    return db.session.get(ExportJob, job_id, populate_existing=True)


def expect_rows(job_id: int, attempt: int, rows: int | None) -> None:
    """Record how many rows this attempt expects to write (counted by the worker as it starts)."""
    with transaction():
        db.session.execute(sa.update(ExportJob).where(ExportJob.id == job_id, ExportJob.attempts == attempt)
                           .values(rows_expected=rows).execution_options(synchronize_session=False))


def heartbeat(job_id: int, rows_written: int, attempt: int) -> bool:
    """Record progress from the worker, on a connection of its own (the export's reads stay untouched).

    False when the job is no longer this attempt's (recovered and re-run elsewhere): the worker stops.
    """
    with db.engine.begin() as connection:
        return bool(connection.execute(
            sa.update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.status == "running", ExportJob.attempts == attempt)
            .values(heartbeat_at=utcnow(), rows_written=rows_written)).rowcount)


def finish(job: ExportJob, attempt: int, *, store: str, key: str, size: int, sha256: str, rows: int,
           identified: bool = False, site_ids: frozenset[int] | None = None, now: datetime | None = None) -> bool:
    """Mark this attempt's job done with its file; False (nothing changed) when it is no longer this attempt's.

    It keeps what the file holds, checked again at each download: patients' names (`identified`) and the
    sites covered (`site_ids`, None: the whole chain or a kind not bound to sites).
    """
    now = now or utcnow()
    covered = None if site_ids is None else json.dumps(sorted(site_ids))
    expires_at = now + timedelta(hours=int(current_app.config["EXPORT_KEEP_HOURS"]))
    with transaction():
        done = db.session.execute(
            sa.update(ExportJob)
            .where(ExportJob.id == job.id, ExportJob.status == "running", ExportJob.attempts == attempt)
            .values(status="done", finished_at=now, heartbeat_at=now, rows_written=rows, store=store,
                    storage_key=key, size=size, sha256=sha256, expires_at=expires_at, identified=identified,
                    site_ids=covered)
            .execution_options(synchronize_session=False)).rowcount
        if done:
            audit.record(None, "export.done", "export_job", job.id,
                         new={"rows": rows, "size": size, "sha256": sha256, "expires_at": expires_at,
                              "attempt": attempt, "identified": identified, "site_ids": covered})
    return bool(done)


def fail(job_id: int, message: str, attempt: int | None = None, now: datetime | None = None) -> bool:
    now = now or utcnow()
    where = [ExportJob.id == job_id, ExportJob.status.in_(LIVE_STATUSES)]
    if attempt is not None:
        where.append(ExportJob.attempts == attempt)
    with transaction():
        failed = db.session.execute(
            sa.update(ExportJob).where(*where).values(status="failed", finished_at=now, error=message[:2000])
            .execution_options(synchronize_session=False)).rowcount
        if failed:
            audit.record(None, "export.failed", "export_job", job_id, new={"error": message[:2000]})
    return bool(failed)


def recover(now: datetime | None = None) -> dict[str, int]:
    """Queue again what a stopped worker left running, and what a lost enqueue left waiting."""
    now = now or utcnow()
    config = current_app.config
    quiet = now - timedelta(seconds=int(config["JOBS_STALE_SECONDS"]))
    limit = int(config["JOBS_MAX_ATTEMPTS"])
    counts = {"requeued": 0, "failed": 0, "enqueued": 0}
    stalled = db.session.execute(sa.select(ExportJob.id, ExportJob.attempts).where(
        ExportJob.status == "running", ExportJob.heartbeat_at < quiet)).all()
    for job_id, attempts in stalled:
        if attempts >= limit:
            if fail(job_id, f"The export stopped {attempts} times before it was written (its worker stopped "
                            "each time). Ask for it again over a shorter period, or ask an administrator.",
                    attempt=attempts, now=now):
                counts["failed"] += 1
            continue
        with transaction():
            moved = db.session.execute(
                sa.update(ExportJob)
                .where(ExportJob.id == job_id, ExportJob.status == "running", ExportJob.attempts == attempts,
                       ExportJob.heartbeat_at < quiet)
                .values(status="queued", enqueued_at=now, rows_written=0)
                .execution_options(synchronize_session=False)).rowcount
            if moved:
                audit.record(None, "export.requeued", "export_job", job_id,
                             reason=f"its worker stopped during attempt {attempts}; run again from the start")
        if moved:
            counts["requeued"] += 1
            _enqueue_quietly(job_id)
    waiting = db.session.scalars(sa.select(ExportJob.id).where(
        ExportJob.status == "queued", ExportJob.enqueued_at < quiet)).all()
    for job_id in waiting:
        with transaction():
            db.session.execute(sa.update(ExportJob).where(ExportJob.id == job_id, ExportJob.status == "queued")
                               .values(enqueued_at=now).execution_options(synchronize_session=False))
        counts["enqueued"] += 1
        _enqueue_quietly(job_id)
    db.session.rollback()
    return counts


def _enqueue_quietly(job_id: int) -> None:
    with contextlib.suppress(jobs.QueueUnavailable):  # tried again at the next recover()
        jobs.enqueue("export.run", job_id)


def expire_due(now: datetime | None = None) -> int:
    """Mark exports past their time `expired`, then delete their files. Returns how many were marked.

    The row says `expired` before the file goes, so no download starts on a file being deleted. A
    delete that fails is logged and tried again at each run until it is done (`file_deleted_at`).
    """
    now = now or utcnow()
    due = db.session.scalars(sa.select(ExportJob.id).where(ExportJob.status == "done", ExportJob.expires_at <= now)
                             .order_by(ExportJob.id)).all()
    expired = 0
    for job_id in due:
        with transaction():
            if db.session.execute(
                    sa.update(ExportJob).where(ExportJob.id == job_id, ExportJob.status == "done")
                    .values(status="expired", expired_at=now)
                    .execution_options(synchronize_session=False)).rowcount:
                audit.record(None, "export.expired", "export_job", job_id, new={"expired_at": now})
                expired += 1
    _delete_expired_files(now)
    db.session.rollback()
    return expired


def _delete_expired_files(now: datetime) -> None:
    left = db.session.execute(sa.select(ExportJob.id, ExportJob.store, ExportJob.storage_key).where(
        ExportJob.status == "expired", ExportJob.file_deleted_at.is_(None), ExportJob.storage_key.is_not(None))
        .order_by(ExportJob.id)).all()
    for job_id, store, key in left:
        try:
            storage.store(store).delete(key)
        except storage.StoreError as error:
            log.warning("Export %s expired but its file could not be deleted: %s (tried again at the next run)",
                        job_id, error)
            continue
        with transaction():
            if db.session.execute(
                    sa.update(ExportJob).where(ExportJob.id == job_id, ExportJob.file_deleted_at.is_(None))
                    .values(file_deleted_at=now).execution_options(synchronize_session=False)).rowcount:
                audit.record(None, "export.file_deleted", "export_job", job_id, new={"file_deleted_at": now})


def status_now(job: ExportJob, now: datetime | None = None) -> str:
    """The job's status as its requester sees it: a done one past its time is expired, marked or not yet."""
    if job.status == "done" and job.expires_at is not None and job.expires_at <= (now or utcnow()):
        return "expired"
    return job.status


def waiting_since(job: ExportJob) -> datetime:
    """Since when a queued job has waited for a worker: asked for, or last held by one (re-queued)."""
    return job.heartbeat_at or job.requested_at


def unclaimed_minutes(job: ExportJob, now: datetime | None = None) -> int | None:
    """Minutes a queued job has waited, once longer than JOBS_STALE_SECONDS (no worker runs?); else None."""
    if job.status != "queued":
        return None
    waited = (now or utcnow()) - waiting_since(job)
    if waited.total_seconds() <= int(current_app.config["JOBS_STALE_SECONDS"]):
        return None
    return max(1, int(waited.total_seconds() // 60))


@dataclass(frozen=True)
class Waiting:
    count: int  # exports waiting for a worker
    since: datetime  # the oldest of them waits since then


def waiting_for_a_worker(now: datetime | None = None) -> Waiting | None:
    """The exports waiting when one has waited longer than JOBS_STALE_SECONDS (else None): one statement."""
    now = now or utcnow()
    count, since = db.session.execute(
        sa.select(sa.func.count(ExportJob.id),
                  sa.func.min(sa.func.coalesce(ExportJob.heartbeat_at, ExportJob.requested_at)))
        .where(ExportJob.status == "queued")).one()
    stale = timedelta(seconds=int(current_app.config["JOBS_STALE_SECONDS"]))
    if not count or since is None or since >= now - stale:
        return None
    return Waiting(count, since)


def job_for(user: User, job_id: int) -> ExportJob:
    """A job of the user's own (another's is not found: its existence says nothing)."""
    job = db.session.get(ExportJob, job_id)
    if job is None or job.requested_by_id != user.id:
        raise NotFound("There is no such export.")
    return job


def opened_download(user: User, job_id: int):
    """(job, readable binary stream) of a finished export; 410 once expired, 409 before it is written."""
    job = job_for(user, job_id)
    what = EXPORT_KIND_TEXT[job.kind]
    if status_now(job) == "expired":
        raise Gone(f"This export ({what}) was kept until {job.expires_at:%Y-%m-%d %H:%M} UTC and has been "
                   "deleted. Ask for it again.")
    if job.status == "failed":
        raise InvalidState(f"This export failed: {job.error}")
    if job.status != "done":
        raise InvalidState(f"This export is still {job.status}: download it once it is done.")
    try:
        return job, storage.store(job.store).open(job.storage_key)
    except storage.StoreError as error:
        raise Unavailable(f"The file store did not give back this export: {error}") from error
