"""Export jobs' pages: one's progress and download, the list of one's own, asking again.

Each person sees only the jobs they asked for (another's answers 404: its existence says
nothing). A page of a job that waits or runs reloads itself every few seconds (a meta refresh:
the content security policy allows no inline script).
"""

import sqlalchemy as sa
from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from ..models import ExportJob
from ..models.job import EXPORT_KIND_TEXT, LIVE_STATUSES
from ..pagination import paginate_entities
from ..security import signed_in
from ..services import export_jobs
from . import downloads
from . import jobs as export_runner
from .views import bp

REFRESH_SECONDS = 3


@bp.route("/jobs")
@signed_in
def job_list():
    query = (sa.select(ExportJob).where(ExportJob.requested_by_id == current_user.id)
             .order_by(ExportJob.id.desc()))
    pagination = paginate_entities(query, ExportJob.id)
    return render_template("exports/job_list.html", pagination=pagination, jobs=pagination.items,
                           kinds=EXPORT_KIND_TEXT, styles=downloads.JOB_STYLES, progress_text=downloads.progress_text,
                           status_now=export_jobs.status_now)


@bp.route("/jobs/<int:job_id>")
@signed_in
def job_detail(job_id: int):
    job = export_jobs.job_for(current_user, job_id)
    return render_template("exports/job_detail.html", job=job, status=export_jobs.status_now(job),
                           asked=downloads.describe(job),
                           live=job.status in LIVE_STATUSES, refresh=REFRESH_SECONDS,
                           progress=downloads.progress_value(job), progress_text=downloads.progress_text(job),
                           styles=downloads.JOB_STYLES, what=EXPORT_KIND_TEXT[job.kind],
                           unclaimed_minutes=export_jobs.unclaimed_minutes(job))


@bp.route("/jobs/<int:job_id>/download")
@signed_in
def job_download(job_id: int):
    return downloads.job_download(current_user, job_id)


@bp.route("/jobs/<int:job_id>/again", methods=["POST"])
@signed_in
def job_again(job_id: int):
    """Ask again for an expired or failed export (checked afresh: the permission, the record, the sites)."""
    job = export_jobs.job_for(current_user, job_id)
    if export_jobs.status_now(job) not in ("expired", "failed"):
        return redirect(url_for("exports.job_detail", job_id=job.id))
    requested = export_runner.request_again(current_user, job)
    flash("Asked again: the workbook is being prepared." if requested.created
          else "The same workbook was already being prepared: here it is.", "success")
    return redirect(url_for("exports.job_detail", job_id=requested.job.id))
