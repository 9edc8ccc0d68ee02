"""Export jobs: what each kind needs, how many rows it will write, and the worker that writes it.

`prepare(user, kind, raw)` checks a request (page or API) as the page would and answers the
params to keep, the file name and the rows expected; `run_job(job_id)` is the queue's
`export.run`: it claims the job, writes the workbook as its requester would see it (their
sites, whether they may see patients' names), keeps it in the file store, and records the
outcome. Any error ends the job `failed` with a message; nothing is left half-written.
"""

import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from flask import current_app, g
from werkzeug.datastructures import MultiDict

from .. import storage, workbooks
from ..database import unlimited_transaction
from ..extensions import db
from ..models import ExportJob, Recall, User
from ..models.job import EXPORT_KINDS
from ..privacy import IDENTIFY
from ..queries.batches import BatchFilters, batch_list_query
from ..queries.lots import LotFilters, lot_list_query
from ..queries.recalls import recall_record
from ..queries.treatments import SessionFilters
from ..services import export_jobs, sites, trace
from ..services.errors import DomainError, InvalidInput, NotAllowed, NotFound

log = logging.getLogger(__name__)

# Seconds between a worker's progress writes (also its heartbeat).
HEARTBEAT_SECONDS = 2.0
# The file store is asked this many times, this long apart, before the job fails.
PUT_TRIES, PUT_PAUSE_SECONDS = 3, 2.0
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2100, 12, 31)
AUDIT_NOT_ALLOWED = ("The audit workbook holds the whole chain's audit trail and patient access: it is for auditors "
                     "and chain-wide accounts (or members of every site). Ask an auditor, or export your sites' "
                     "sessions.")
# The list filters a lots or batches export keeps (as the list page's query string names them).
# Kinds whose rows are those of the requester's sites; a trace or a recall follows its record everywhere.
SITE_SCOPED = ("audit", "lots", "batches", "sessions")
LIST_FILTER_KEYS = {"lots": ("ingredient_id", "status", "expiring_within_days", "expired_in_stock", "q", "sort"),
                    "batches": ("formula", "status", "bud_within_hours", "compounded_from", "compounded_to", "q")}


@dataclass(frozen=True)
class Prepared:
    kind: str
    params: dict
    filename: str
    rows_expected: int | None  # None: not counted (a job's worker counts as it starts)


@dataclass(frozen=True)
class Spec:
    permission: str
    prepare: Callable[[User, dict], Prepared]
    build: Callable  # (user, params, out, progress) -> WorkbookSummary


def _day(raw: dict, name: str, *, required: bool) -> date | None:
    value = raw.get(name)
    if value in (None, ""):
        if required:
            raise InvalidInput(f"Give `{name}`, a day as YYYY-MM-DD.", field=name)
        return None
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"`{name}` is not a day: write it as YYYY-MM-DD.", field=name) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(f"`{name}` must be between 1900 and 2100.", field=name)
    return day


def _period(raw: dict, *, required: bool) -> tuple[date | None, date | None]:
    start, end = _day(raw, "start", required=required), _day(raw, "end", required=required)
    if start and end and end < start:
        raise InvalidInput("The last day is before the first day.", field="end")
    return start, end


def _record_id(raw: dict, name: str) -> int:
    value = raw.get(name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"Give `{name}`, the id of the record.", field=name) from None
    if not 1 <= number <= 2**31 - 1:
        raise NotFound("There is no such record.")
    return number


def _scope(user: User, params: dict) -> frozenset[int] | None:
    """The sites asked for, narrowed to those the requester may see now (memberships can change)."""
    visible = sites.visible_site_ids(user)
    asked = params.get("site_ids")
    if asked is None:
        return visible
    return frozenset(asked) if visible is None else frozenset(asked) & visible


def _scope_param(site_ids) -> list[int] | None:
    return None if site_ids is None else sorted(site_ids)


def _count(query) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0


# --- audit ---------------------------------------------------------------------------------


def _prepare_audit(user: User, raw: dict, count: bool = True) -> Prepared:
    start, end = _period(raw, required=True)
    if not sites.sees_whole_chain(user):
        raise NotAllowed(AUDIT_NOT_ALLOWED)
    site_ids = sites.visible_site_ids(user)
    rows = sum(workbooks.audit_row_counts(start, end, site_ids).values()) if count else None
    return Prepared("audit", {"start": start.isoformat(), "end": end.isoformat(),
                              "site_ids": _scope_param(site_ids)},
                    f"audit-{start.isoformat()}_{end.isoformat()}.xlsx", rows)


def _build_audit(user: User, params: dict, out, progress):
    if not sites.sees_whole_chain(user):
        raise NotAllowed(AUDIT_NOT_ALLOWED)
    return workbooks.audit_workbook(out, date.fromisoformat(params["start"]), date.fromisoformat(params["end"]),
                                    generated_by=f"{user.display_name} ({user.role})",
                                    clinic_name=current_app.config["CLINIC_NAME"], site_ids=_scope(user, params),
                                    progress=progress)


# --- trace and recall ------------------------------------------------------------------------


def _trace_of(params: dict, per_page: int | None):
    if params["target_kind"] == "lot":
        return trace.trace_lot(params["target_id"], per_page=per_page)
    return trace.trace_batch(params["target_id"], per_page=per_page)


def _prepare_trace(user: User, raw: dict, count: bool = True) -> Prepared:  # counted by the check anyway
    target_kind = raw.get("target_kind")
    if target_kind not in ("lot", "batch"):
        raise InvalidInput("Give `target_kind`: lot or batch.", field="target_kind")
    params = {"target_kind": target_kind, "target_id": _record_id(raw, "target_id")}
    scope = _trace_of(params, per_page=1)
    target = scope.lot or scope.batch
    return Prepared("trace", params, f"trace-{target.code}.xlsx", sum(scope.counts.values()))


def _build_trace(user: User, params: dict, out, progress):
    return workbooks.trace_workbook(_trace_of(params, None), out, clinic_name=current_app.config["CLINIC_NAME"],
                                    identify=user.can(IDENTIFY), progress=progress)


def _prepare_recall(user: User, raw: dict, count: bool = True) -> Prepared:  # counted by the check anyway
    recall_id = _record_id(raw, "target_id")
    if db.session.get(Recall, recall_id) is None:
        raise NotFound("There is no such recall.")
    record = recall_record(recall_id, per_page=1)
    return Prepared("recall", {"target_id": recall_id}, f"recall-{recall_id}.xlsx",
                    sum(record.scope.counts.values()))


def _build_recall(user: User, params: dict, out, progress):
    record = recall_record(params["target_id"], per_page=None)
    return workbooks.recall_workbook(record.recall, record.scope, record.contacts, out,
                                     clinic_name=current_app.config["CLINIC_NAME"], opened_by=record.opened_by,
                                     attempts=record.attempts, identify=user.can(IDENTIFY),
                                     late_sessions=record.late_sessions, progress=progress)


# --- lists ---------------------------------------------------------------------------------------


def _filters(kind: str, raw: dict) -> dict:
    given = raw.get("filters") or {}
    if not isinstance(given, dict):
        raise InvalidInput("`filters` is an object of the list's filters, as its page's address names them.",
                           field="filters")
    return {key: str(given[key]) for key in LIST_FILTER_KEYS[kind] if given.get(key) not in (None, "")}


def _list_query(kind: str, params: dict, site_ids):
    filters_class, query = (LotFilters, lot_list_query) if kind == "lots" else (BatchFilters, batch_list_query)
    filters = filters_class.from_args(MultiDict(params["filters"]))
    if filters.errors:
        raise InvalidInput(" ".join(filters.errors.values()))
    return query(filters, site_ids=site_ids)


def _prepare_list(kind: str):
    def prepare(user: User, raw: dict, count: bool = True) -> Prepared:
        site_ids = sites.visible_site_ids(user)
        params = {"filters": _filters(kind, raw), "site_ids": _scope_param(raw.get("site_ids", site_ids))}
        query = _list_query(kind, params, _scope(user, params))  # checks the filters
        rows = _count(query) if count else None
        return Prepared(kind, params, f"{kind}-{date.today().isoformat()}.xlsx", rows)  # noqa: DTZ011
    return prepare


def _build_lots(user: User, params: dict, out, progress):
    return workbooks.lot_list_workbook(out, _list_query("lots", params, _scope(user, params)), progress)


def _build_batches(user: User, params: dict, out, progress):
    return workbooks.batch_list_workbook(out, _list_query("batches", params, _scope(user, params)), progress)


def _session_query(user: User, params: dict):
    return workbooks.session_list_query(SessionFilters(
        patient_id=params.get("patient_id"), practitioner_id=params.get("practitioner_id"),
        first_day=date.fromisoformat(params["start"]) if params.get("start") else None,
        last_day=date.fromisoformat(params["end"]) if params.get("end") else None), site_ids=_scope(user, params))


def _prepare_sessions(user: User, raw: dict, count: bool = True) -> Prepared:
    start, end = _period(raw, required=False)
    filters = raw.get("filters") or {}
    params = {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None,
              "patient_id": _record_id(filters, "patient_id") if filters.get("patient_id") else None,
              "practitioner_id": _record_id(filters, "practitioner_id") if filters.get("practitioner_id") else None,
              "site_ids": _scope_param(raw.get("site_ids", sites.visible_site_ids(user)))}
    days = "_".join(day.isoformat() for day in (start, end) if day) or date.today().isoformat()  # noqa: DTZ011
    return Prepared("sessions", params, f"sessions-{days}.xlsx",
                    _count(_session_query(user, params)) if count else None)


def _build_sessions(user: User, params: dict, out, progress):
    return workbooks.session_list_workbook(out, _session_query(user, params), progress=progress)


SPECS = {
    "audit": Spec("exports.audit", _prepare_audit, _build_audit),
    "trace": Spec("patients.read", _prepare_trace, _build_trace),
    "recall": Spec("patients.read", _prepare_recall, _build_recall),
    "lots": Spec("lots.read", _prepare_list("lots"), _build_lots),
    "batches": Spec("batches.read", _prepare_list("batches"), _build_batches),
    "sessions": Spec("exports.audit", _prepare_sessions, _build_sessions),
}
assert set(SPECS) == set(EXPORT_KINDS)


def prepare(user: User, kind: str, raw: dict, *, count: bool = True) -> Prepared:
    """Check an export request as its page would: 422 for bad input, 403 without the permission, 404 no record.

    `count`: also count the rows it would write (the offer page decides by it; a job's worker counts them).
    """
    spec = SPECS.get(kind)
    if spec is None:
        raise InvalidInput(f"`kind` must be one of: {', '.join(EXPORT_KINDS)}.", field="kind")
    if not user.can(spec.permission):
        raise NotAllowed("You may not export this.")
    return spec.prepare(user, raw, count=count)


def request(user: User, kind: str, raw: dict) -> export_jobs.Requested:
    prepared = prepare(user, kind, raw, count=False)  # the worker counts as it starts, not the request
    return export_jobs.request(user, prepared.kind, prepared.params, rows_expected=prepared.rows_expected,
                               filename=prepared.filename)


def request_again(user: User, job: ExportJob) -> export_jobs.Requested:
    """Ask again for what `job` asked (an expired or failed one), checked afresh as a new request."""
    return request(user, job.kind, _raw_of(job.kind, export_jobs.params_of(job)))


def _raw_of(kind: str, params: dict) -> dict:
    """The request that `prepare` turned into `params` (its inverse: the same params come back)."""
    if kind in ("lots", "batches"):
        return {"filters": params["filters"], "site_ids": params["site_ids"]}
    if kind == "sessions":
        return {"start": params["start"], "end": params["end"], "site_ids": params["site_ids"],
                "filters": {"patient_id": params["patient_id"], "practitioner_id": params["practitioner_id"]}}
    return {key: value for key, value in params.items() if key != "site_ids"}  # audit, trace, recall


# --- the worker ---------------------------------------------------------------------------------


@contextlib.contextmanager
def acting_as(user: User):
    """What a request of `user` would see (their sites, names of patients or not), outside a request."""
    with current_app.test_request_context("/"):
        g._login_user = user  # Flask-Login's current user for this context
        yield


class _Progress:
    """Counts rows as the workbook writes them; a thread writes the count (and the heartbeat) every few seconds."""

    def __init__(self, app, job_id: int, attempt: int, work_file: str | None = None):
        self.app, self.job_id, self.attempt, self.work_file = app, job_id, attempt, work_file
        self.rows = 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"export-{job_id}-heartbeat", daemon=True)

    def __call__(self, rows: int) -> None:
        self.rows += rows
        if self.lost:
            raise _Superseded()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if self.work_file:  # a live file: the sweep of a worker that starts leaves it alone
                    with contextlib.suppress(OSError):
                        os.utime(self.work_file)
                with self.app.app_context():
                    if not export_jobs.heartbeat(self.job_id, self.rows, self.attempt):
                        self.lost = True
                        return
            except Exception:  # a database blip: the next beat tries again
                log.warning("Export %s: the heartbeat could not be written.", self.job_id, exc_info=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS * 2)


class _Superseded(Exception):
    """This attempt's job was taken back (its heartbeat was judged stale) and runs elsewhere: stop writing."""


def run_job(job_id: int) -> None:
    """The queue's `export.run`: write the job's workbook, keep it in the file store, record how it ended."""
    job = export_jobs.claim(job_id)
    if job is None:
        return  # not waiting: another worker has it, or it is done
    attempt = job.attempts
    app = current_app._get_current_object()
    try:
        _write(app, job, attempt)
    except _Superseded:
        log.warning("Export %s attempt %s was taken back as stalled; another run writes it.", job_id, attempt)
    except DomainError as error:
        db.session.rollback()
        export_jobs.fail(job_id, error.message, attempt)
    except storage.StoreError as error:  # its message names no key, folder or bucket address
        db.session.rollback()
        log.exception("Export %s attempt %s: the file store did not keep the workbook.", job_id, attempt)
        export_jobs.fail(job_id, f"The file store could not keep the workbook: {error} Ask for it again later.",
                         attempt)
    except Exception:
        # The requester sees a reference, never the error: a database error holds its statement and values.
        db.session.rollback()
        reference = f"E{job_id}-{attempt}"
        log.exception("Export %s attempt %s failed (reference %s).", job_id, attempt, reference)
        export_jobs.fail(job_id, f"The export failed because of an unexpected error (reference {reference}); an "
                                 "administrator can find it in the worker's log.", attempt)


def holds_identities(user: User, kind: str) -> bool:
    """Whether `user`'s workbook of `kind` names patients: a trace or recall written for one who may identify
    them, and the audit workbook (its trail keeps patients' details as they were recorded)."""
    return kind == "audit" or (kind in ("trace", "recall") and user.can(IDENTIFY))


def covered_sites(user: User, kind: str, params: dict) -> frozenset[int] | None:
    """The sites a workbook of `kind` written now for `user` covers (None: the whole chain, or not site-bound)."""
    return _scope(user, params) if kind in SITE_SCOPED else None


def _write(app, job: ExportJob, attempt: int) -> None:
    user = db.session.get(User, job.requested_by_id)
    spec = SPECS[job.kind]
    if user is None or not user.active or not user.can(spec.permission):
        raise NotAllowed("The person who asked for this export may no longer export it.")
    params = export_jobs.params_of(job)
    store = storage.store()
    key = storage.export_key(job.id, secrets.token_hex(16))
    # The heartbeat goes on until the outcome is recorded: hashing and keeping a large file take a while too.
    with tempfile.NamedTemporaryFile(prefix="export-job-", suffix=".xlsx", dir=work_folder(app)) as handle, \
            _Progress(app, job.id, attempt, handle.name) as progress:
        with acting_as(user):
            with unlimited_transaction(db.session):
                rows = spec.prepare(user, _raw_of(job.kind, params)).rows_expected
            db.session.rollback()
            export_jobs.expect_rows(job.id, attempt, rows)
            with unlimited_transaction(db.session):
                identified, site_ids = holds_identities(user, job.kind), covered_sites(user, job.kind, params)
                summary = spec.build(user, params, handle, progress)
                handle.flush()
            db.session.rollback()  # the reads are over
        if progress.lost:
            raise _Superseded()
        digest, size = _sha256_of(handle.name)
        _keep(store, key, handle.name)
        if not export_jobs.finish(job, attempt, store=store.kind, key=key, size=size, sha256=digest,
                                  rows=summary.total, identified=identified, site_ids=site_ids):
            with contextlib.suppress(storage.StoreError):
                store.delete(key)
            raise _Superseded()


def _keep(store, key: str, path: str) -> None:
    """Put the file in the store, asking again after a pause (a bucket's blip) before giving up."""
    for attempt in range(1, PUT_TRIES + 1):
        try:
            store.put_file(key, path, workbooks.XLSX_MIMETYPE)
            return
        except storage.StoreError:
            if attempt == PUT_TRIES:
                raise
            log.warning("The file store refused an export's file (try %s of %s).", attempt, PUT_TRIES,
                        exc_info=True)
            time.sleep(PUT_PAUSE_SECONDS)


def work_folder(app) -> str:
    """Where workbooks are written before they are kept: a folder of this account's own, readable by it alone."""
    path = app.config.get("EXPORT_WORK_PATH") or os.path.join(tempfile.gettempdir(),
                                                               f"compounding-exports-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def sweep_work_folder(app=None) -> int:
    """Delete the files a stopped worker left (patient data), untouched for JOBS_STALE_SECONDS; how many.

    A live export's file is touched at each heartbeat, so a worker that starts beside another leaves it.
    """
    app = app or current_app._get_current_object()
    folder = work_folder(app)
    quiet = time.time() - int(app.config["JOBS_STALE_SECONDS"])
    swept = 0
    for entry in os.scandir(folder):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < quiet:
                os.unlink(entry.path)
                swept += 1
    if swept:
        log.warning("Deleted %s workbook file(s) that a stopped export worker left in %s.", swept, folder)
    return swept


def _sha256_of(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as data:
        while chunk := data.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
