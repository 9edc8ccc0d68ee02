"""A finished export job for the pages and the API alike: what it asked, how far it is, its file.

The file is streamed from the file store in chunks, only to its requester, and only while they
still hold the kind's permission (a role changed since the request: 403). Reading it counts as
seeing the patient data it holds, as the synchronous downloads do.
"""

from flask import Response

from .. import workbooks
from ..documents.files import content_disposition
from ..extensions import db
from ..models import Batch, ExportJob, Lot, Recall, Site, User
from ..models.job import EXPORT_KIND_TEXT
from ..privacy import IDENTIFY, note_access
from ..services import export_jobs, sites
from ..services.errors import NotAllowed
from .jobs import AUDIT_NOT_ALLOWED, SITE_SCOPED, SPECS

CHUNK = 256 * 1024
JOB_STYLES = {"queued": "secondary", "running": "info", "done": "success", "failed": "danger",
              "expired": "secondary"}
# Patient data in the workbook: what the access log calls reading it (as the synchronous downloads do).
ACCESS_ACTIONS = {"audit": "export.audit", "sessions": "export.sessions", "trace": "export.trace",
                  "recall": "export.recall"}


def ensure_may_download(user: User, job: ExportJob) -> None:
    """403 when the requester no longer holds the kind's permission (or, for the audit, the whole chain), or
    may no longer see what the file holds: patients' names, or one of the sites it covers."""
    if not user.can(SPECS[job.kind].permission):
        raise NotAllowed("You may no longer download this export: your role no longer allows this kind of "
                         "workbook.")
    if job.kind == "audit" and not sites.sees_whole_chain(user):
        raise NotAllowed(AUDIT_NOT_ALLOWED)
    if export_jobs.status_now(job) != "done":
        return  # nothing to judge (409 or 410 follows)
    if job.identified and not user.can(IDENTIFY):
        raise NotAllowed("This workbook was written when you could see patients' names; ask for it again, and "
                         "it is written as your role allows now.")
    if job.kind in SITE_SCOPED and not _still_sees(user, export_jobs.sites_of(job)):
        raise NotAllowed("This workbook holds rows of sites you no longer see; ask for it again, and it holds "
                         "your sites' rows now.")


def _still_sees(user: User, covered: frozenset[int] | None) -> bool:
    if covered is None:
        return sites.sees_whole_chain(user)
    visible = sites.visible_site_ids(user)
    return visible is None or covered <= visible


def job_download(user: User, job_id: int) -> Response:
    """The job's workbook as an attachment: 404 another's, 403 lost permission, 409 not done, 410 expired."""
    ensure_may_download(user, export_jobs.job_for(user, job_id))
    job, handle = export_jobs.opened_download(user, job_id)
    action = ACCESS_ACTIONS.get(job.kind)
    if action is not None:
        params = export_jobs.params_of(job)
        target_type = {"trace": params.get("target_kind"), "recall": "recall", "audit": "audit"}.get(
            job.kind, "treatment_sessions")
        note_access(action, target_type=target_type, target_id=params.get("target_id"))
    response = Response(_chunks(handle), mimetype=workbooks.XLSX_MIMETYPE, direct_passthrough=True)
    response.call_on_close(handle.close)  # also when the client goes away before the end
    if job.size is not None:
        response.content_length = job.size
    response.headers["Content-Disposition"] = content_disposition(job.filename or f"export-{job.id}.xlsx")
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if job.sha256:
        response.headers["ETag"] = f'"{job.sha256}"'
    return response


def _chunks(handle):
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()


def progress_text(job: ExportJob) -> str:
    """"12,000 of about 48,000 rows" (or so far, when the count was not known)."""
    if job.rows_expected:
        return f"{job.rows_written:,} of about {job.rows_expected:,} rows"
    return f"{job.rows_written:,} rows so far"


def progress_value(job: ExportJob) -> tuple[int, int] | None:
    """(value, max) for a progress bar; None when the size is not known."""
    if not job.rows_expected:
        return None
    return min(job.rows_written, job.rows_expected), job.rows_expected


def describe(job: ExportJob) -> list[tuple[str, str]]:
    """What the job asked, in words: (label, text) lines for its page (a query or two: one job)."""
    params = export_jobs.params_of(job)
    lines = [("Workbook", EXPORT_KIND_TEXT[job.kind])]
    if job.kind in ("audit", "sessions"):
        lines.append(("Period", _period(params.get("start"), params.get("end"))))
    if job.kind == "trace":
        model = Lot if params["target_kind"] == "lot" else Batch
        code = db.session.scalar(db.select(model.code).where(model.id == params["target_id"]))
        lines.append((params["target_kind"].title(), code or f"#{params['target_id']} (no longer found)"))
    if job.kind == "recall":
        recall = db.session.get(Recall, params["target_id"])
        lines.append(("Recall", f"#{params['target_id']}" + (f": {recall.reason}" if recall else "")))
    if job.kind in ("lots", "batches"):
        filters = params.get("filters") or {}
        lines.append(("Filters", ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in
                                           sorted(filters.items())) or "none (every row)"))
    if job.kind == "sessions":
        if params.get("practitioner_id"):
            name = db.session.scalar(db.select(User.display_name).where(User.id == params["practitioner_id"]))
            lines.append(("Practitioner", name or f"#{params['practitioner_id']}"))
        if params.get("patient_id"):
            lines.append(("Patient", f"#{params['patient_id']}"))
    if job.kind in SITE_SCOPED and job.status in ("done", "expired"):
        covered = export_jobs.sites_of(job)  # what the run covered: the requester's sites then
        lines.append(("Sites", _sites(None if covered is None else sorted(covered))))
    elif "site_ids" in params:
        lines.append(("Sites", _sites(params["site_ids"])))
    return lines


def _period(start: str | None, end: str | None) -> str:
    if start and end:
        return f"{start} to {end}"
    if start:
        return f"from {start}"
    if end:
        return f"until {end}"
    return "every day"


def _sites(site_ids: list[int] | None) -> str:
    if site_ids is None:
        return "every site"
    if not site_ids:
        return "none"
    codes = db.session.scalars(db.select(Site.code).where(Site.id.in_(site_ids)).order_by(Site.code)).all()
    return ", ".join(codes)
