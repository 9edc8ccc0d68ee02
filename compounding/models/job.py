"""Work in the background (DESIGN 10.7): export jobs and the mail they and the digests send.

The job row is the truth about a job; the task queue only carries its id. A worker claims a
job by moving it from `queued` to `running` in one UPDATE, writes a heartbeat while it works,
and leaves it `done` (with the file's place in the file store) or `failed` (with a message).
A job whose worker stopped (its heartbeat went quiet) is queued again and re-run from the start.
Nothing is deleted: a finished job's file is removed from the store when it expires and the row
says `expired`.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

EXPORT_KINDS = ("audit", "trace", "recall", "lots", "batches", "sessions")
EXPORT_KIND_TEXT = {"audit": "Audit workbook", "trace": "Trace workbook", "recall": "Recall workbook",
                    "lots": "Lots", "batches": "Batches", "sessions": "Treatment sessions"}
JOB_STATUSES = ("queued", "running", "done", "failed", "expired")
# A job that is waiting or working: a second identical request is answered with it.
LIVE_STATUSES = ("queued", "running")

MAIL_KINDS = ("digest",)
# pending: waits for its next try; sending: a worker holds it (until `next_attempt_at`, its lease); sent;
# failed: given up, until an admin sends it again; cancelled: its recipient may no longer have it (left the
# site, deactivated, no address); superseded: a newer digest of the same site was written for the same person.
MAIL_STATUSES = ("pending", "sending", "sent", "failed", "cancelled", "superseded")


class ExportJob(db.Model):
    __tablename__ = "export_jobs"
    __table_args__ = (
        one_of("kind", EXPORT_KINDS, "kind_known"),
        one_of("status", JOB_STATUSES, "status_known"),
        sa.CheckConstraint("rows_written >= 0", name="rows_written_not_negative"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # One live job per request: a second identical request while one waits or runs finds it.
        sa.Index("ux_export_jobs_live_request", "request_key", unique=True,
                 sqlite_where=sa.text("status IN ('queued', 'running')"),
                 postgresql_where=sa.text("status IN ('queued', 'running')")),
        sa.Index("ix_export_jobs_requester", "requested_by_id", "id"),
        sa.Index("ix_export_jobs_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    # What was asked (dates, target, list filters, the sites in scope), as JSON text.
    params: Mapped[str] = mapped_column(sa.Text)
    # SHA-256 of the requester and the params: equal for identical requests.
    request_key: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    requested_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it was last put on the queue (a queued job not taken for long is put on it again).
    enqueued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    # Progress: rows written so far of about `rows_expected` (counted before writing).
    rows_written: Mapped[int] = mapped_column(default=0)
    rows_expected: Mapped[int | None]
    error: Mapped[str] = mapped_column(sa.Text, default="")
    # The result: a workbook in the file store, kept until `expires_at`.
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    store: Mapped[str | None] = mapped_column(sa.String(10))
    storage_key: Mapped[str | None] = mapped_column(sa.String(255))
    size: Mapped[int | None]
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    expires_at: Mapped[datetime | None]
    # Expiry marks the row first, then deletes the file (`storage_key` kept): a delete that failed is
    # tried again at the next run until `file_deleted_at` says it is gone.
    expired_at: Mapped[datetime | None]
    file_deleted_at: Mapped[datetime | None]
    # What the written workbook holds, judged when it was written and checked again at each download:
    # patients' names (its requester could identify them then), and the sites it covered (JSON list of ids;
    # null: the whole chain, or a kind that follows its record everywhere: trace, recall).
    identified: Mapped[bool] = mapped_column(default=False)
    site_ids: Mapped[str | None] = mapped_column(sa.Text)


class MailMessage(db.Model):
    """One e-mail to one person, kept before it is sent: a server that refuses or is down loses nothing."""

    __tablename__ = "mail_messages"
    __table_args__ = (
        one_of("kind", MAIL_KINDS, "kind_known"),
        one_of("status", MAIL_STATUSES, "status_known"),
        # One digest a day per site and person, however often the digest job runs.
        sa.UniqueConstraint("kind", "site_id", "digest_date", "recipient_id", name="uq_mail_messages_digest"),
        sa.Index("ix_mail_messages_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default="digest")
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    digest_date: Mapped[date]
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    to_address: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(200))
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    # Tries so far, counted when a worker takes it: a worker that stops while sending still counts one.
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
