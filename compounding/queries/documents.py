"""Documents: a record's files with who uploaded and withdrew them, a lot's certificate, who may see them."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import BatchTest, Document, Equipment, Lot, Qualification, User
from ..services.documents import lot_lineage_ids
from ..services.errors import NotFound
from .people import people_at_sites
from .scope import SiteIds, at_sites, in_scope

_UPLOADER, _WITHDRAWER = aliased(User), aliased(User)


@dataclass(frozen=True)
class DocumentRow:
    """A document as a panel or an answer shows it: the row and the names of the people on it."""

    document: Document
    uploaded_by: str
    withdrawn_by: str


def _with_names():
    """(Document, uploader's name, withdrawer's name)."""
    return (sa.select(Document, sa.func.coalesce(_UPLOADER.display_name, "").label("uploaded_by"),
                      sa.func.coalesce(_WITHDRAWER.display_name, "").label("withdrawn_by"))
            .outerjoin(_UPLOADER, _UPLOADER.id == Document.uploaded_by_id)
            .outerjoin(_WITHDRAWER, _WITHDRAWER.id == Document.withdrawn_by_id))


def documents_query(entity_type: str, entity_ids):
    """A select of (Document, uploader's name, withdrawer's name) for records of one type: standing ones
    first, then withdrawn, each in the order uploaded."""
    return (_with_names().where(Document.entity_type == entity_type, Document.entity_id.in_(list(entity_ids)))
            .order_by(Document.withdrawn_at.is_not(None), Document.id))


def document_rows(entity_type: str, entity_ids) -> dict[int, list[DocumentRow]]:
    """The documents of many records of one type, with names, in one statement (none for no records)."""
    ids = list(dict.fromkeys(entity_ids))
    found: dict[int, list[DocumentRow]] = {i: [] for i in ids}
    if ids:
        for document, uploaded_by, withdrawn_by in db.session.execute(documents_query(entity_type, ids)):
            found[document.entity_id].append(DocumentRow(document, uploaded_by, withdrawn_by))
    return found


def document_row(document_id: int) -> DocumentRow | None:
    """One document with its names."""
    row = db.session.execute(_with_names().where(Document.id == document_id)).first()
    return DocumentRow(*row) if row is not None else None


def certificate_of(lot: Lot) -> Document | None:
    """The certificate of analysis a lot's release rests on: the latest standing one attached to the lot, else
    to the lot it was split from (as `services.documents.has_certificate` judges)."""
    lineage = lot_lineage_ids(lot)
    found = db.session.scalars(
        sa.select(Document).where(Document.entity_type == "lot", Document.entity_id.in_(lineage),
                                  Document.kind == "certificate_of_analysis", Document.withdrawn_at.is_(None))).all()
    # The lot's own certificate before its parent's; the latest of each.
    return min(found, key=lambda d: (lineage.index(d.entity_id), -d.id), default=None)


def record_visible(entity_type: str, entity_id: int, site_ids: SiteIds) -> bool:
    """Whether the record a document belongs to is at the sites a viewer may see (`site_ids`; None: every site).

    A lot as its page judges it, or through a lot split from it (a transfer's child lot carries its
    parent's certificate); a batch as its page does; a test result as its batch; equipment at its
    site; a qualification as its person (a member of a site in scope, or a chain-wide account).
    """
    if site_ids is None:
        return True
    if entity_type == "qualification":  # a person's, at the sites they belong to (or everywhere, chain-wide)
        return db.session.scalar(sa.select(Qualification.id).join(User, User.id == Qualification.user_id).where(
            Qualification.id == entity_id, people_at_sites(site_ids))) is not None
    if entity_type == "lot":
        return in_scope("lot", entity_id, site_ids) or _child_lot_in_scope(entity_id, site_ids)
    if entity_type == "batch":
        return in_scope("batch", entity_id, site_ids)
    if entity_type == "batch_test":
        batch_id = db.session.scalar(sa.select(BatchTest.batch_id).where(BatchTest.id == entity_id))
        return batch_id is not None and in_scope("batch", batch_id, site_ids)
    if entity_type == "equipment":
        return db.session.scalar(sa.select(Equipment.id).where(
            Equipment.id == entity_id, at_sites(Equipment.site_id, site_ids))) is not None
    return False


def _child_lot_in_scope(lot_id: int, site_ids: SiteIds) -> bool:
    """Whether a lot split from this one (at any depth) is at the sites in scope: a child lot is its parent's
    supplier lot, so whoever holds it reads the parent's certificate (one recursive statement)."""
    tree = sa.select(Lot.id).where(Lot.parent_lot_id == lot_id).cte("descendants", recursive=True)
    tree = tree.union_all(sa.select(Lot.id).where(Lot.parent_lot_id == tree.c.id))
    return db.session.scalar(sa.select(Lot.id).where(Lot.id.in_(sa.select(tree.c.id)),
                                                     at_sites(Lot.site_id, site_ids)).limit(1)) is not None


def ensure_record_visible(entity_type: str, entity_id: int, site_ids: SiteIds, what: str = "document") -> None:
    """404, as for a record that does not exist, when the record is outside the viewer's sites."""
    if not record_visible(entity_type, entity_id, site_ids):
        raise NotFound(f"There is no such {what}.")
