"""API: export jobs, workbooks written in the background (DESIGN 10.7, 10.10).

`POST /exports` asks for one (202; 200 with the job already waiting or running for the same
request), `GET /exports/{id}` follows it, `GET /exports/{id}/download` fetches the workbook once
done (409 before, 410 once deleted at its time). Each caller sees only their own jobs (another's:
404); asking and downloading need the kind's permission (403).
"""

import sqlalchemy as sa
from flask import url_for
from flask_login import current_user

from ..exports import downloads
from ..exports import jobs as export_runner
from ..models import ExportJob
from ..pagination import paginate_entities, per_page_arg
from ..services import export_jobs
from .schemas.exports import ExportJobSchema, ExportRequestSchema
from .views import answer, json_body, load, page_answer, route, shared


def dump(job: ExportJob) -> dict:
    status = export_jobs.status_now(job)  # a done job past its time is expired, even before it is marked
    data = {"id": job.id, "kind": job.kind, "status": status,
            "progress": {"rows_written": job.rows_written, "rows_expected": job.rows_expected},
            "params": export_jobs.params_of(job), "filename": job.filename, "attempts": job.attempts,
            "requested_at": job.requested_at, "started_at": job.started_at, "finished_at": job.finished_at,
            "url": url_for("api.export_detail", job_id=job.id)}
    if status == "done":
        data.update(download_url=url_for("api.export_download", job_id=job.id), size=job.size, sha256=job.sha256)
    if status in ("done", "expired"):
        data["expires_at"] = job.expires_at
    if status == "failed":
        data["error"] = job.error
    return shared(ExportJobSchema).dump(data)


@route("/exports", "POST", permission="signed_in",
       summary="Ask for a workbook written in the background: 202 with the new job, or 200 with the one already "
               "waiting or running for the same request; 403 without the kind's permission, 404 no such record",
       body=ExportRequestSchema, response=ExportJobSchema, status=202,
       also={200: "The same request was already waiting or running: that job"}, errors=(403, 404))
def export_request():
    data = load(ExportRequestSchema, json_body())
    kind = data.pop("kind")
    requested = export_runner.request(current_user, kind, data)
    return answer(dump(requested.job), 202 if requested.created else 200)


@route("/exports", permission="signed_in", summary="The caller's export jobs, newest first",
       response=ExportJobSchema, many=True, errors=(422,))
def export_list():
    query = (sa.select(ExportJob).where(ExportJob.requested_by_id == current_user.id)
             .order_by(ExportJob.id.desc()))
    pagination = paginate_entities(query, ExportJob.id, per_page=per_page_arg())
    return answer(page_answer([dump(job) for job in pagination.items], pagination))


@route("/exports/<int:job_id>", permission="signed_in",
       summary="One of the caller's export jobs: its status, progress, and once done its download_url and "
               "expires_at, or its error",
       response=ExportJobSchema, errors=(404,))
def export_detail(job_id: int):
    return answer(dump(export_jobs.job_for(current_user, job_id)))


@route("/exports/<int:job_id>/download", permission="signed_in",
       summary="The job's workbook (.xlsx, attachment): 403 without the kind's permission now, 409 before it is "
               "written (or after it failed), 410 once deleted at its expiry, 503 when the file store does not "
               "answer",
       errors=(403, 404, 409, 410, 503))
def export_download(job_id: int):
    return downloads.job_download(current_user, job_id)
