"""Documents that prove a record: certificates of analysis, test reports, calibration certificates, evidence.

The bytes live in the file store (`compounding/storage.py`: a folder in `instance/`, or an
S3-compatible bucket), named by their SHA-256; the row says what they are, whose record they
belong to and who uploaded them. Nothing is deleted: a document attached by mistake is withdrawn
with a reason and stays listed as withdrawn.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._common import one_of, utcnow

DOCUMENT_ENTITY_TYPES = ("lot", "batch", "batch_test", "qualification", "equipment")
DOCUMENT_KINDS = ("certificate_of_analysis", "test_report", "calibration_certificate", "evidence", "other")
DOCUMENT_KIND_TEXT = {"certificate_of_analysis": "Certificate of analysis", "test_report": "Test report",
                      "calibration_certificate": "Calibration certificate", "evidence": "Evidence",
                      "other": "Other"}
# What a record's documents are, unless the uploader says otherwise.
DEFAULT_KIND = {"lot": "certificate_of_analysis", "batch": "other", "batch_test": "test_report",
                "qualification": "evidence", "equipment": "calibration_certificate"}
CONTENT_TYPES = ("application/pdf", "image/png", "image/jpeg")


class Document(db.Model):
    __tablename__ = "documents"
    __table_args__ = (
        one_of("entity_type", DOCUMENT_ENTITY_TYPES, "entity_type_known"),
        one_of("kind", DOCUMENT_KINDS, "kind_known"),
        one_of("content_type", CONTENT_TYPES, "content_type_known"),
        sa.CheckConstraint("size > 0", name="size_positive"),
        sa.Index("ix_documents_entity", "entity_type", "entity_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(sa.String(20))
    entity_id: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(30))
    # The name it was uploaded with (no folders), for the download.
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(40))
    size: Mapped[int]
    # Of the bytes stored (an image is stored without its metadata), and of the bytes received.
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    received_sha256: Mapped[str] = mapped_column(sa.String(64))
    # Where the bytes are: the store's kind (`folder`, `s3`) and the key inside it.
    store: Mapped[str] = mapped_column(sa.String(10))
    storage_key: Mapped[str] = mapped_column(sa.String(255))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    uploaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    withdraw_reason: Mapped[str] = mapped_column(sa.Text, default="")
