"""Documents (DESIGN 10.6): files that prove a record, checked by content and kept in the file store.

`attach` takes the bytes as uploaded: a PDF, PNG or JPEG recognised by its content (never by its
name), not empty, not over DOCUMENT_MAX_BYTES (413), an image not larger than IMAGE_MAX_PIXELS
(a decompression bomb is refused before it is decoded) and saved again without its metadata
(GPS position, camera, comments); a name with a folder in it is refused. The bytes go to the
file store first (named by SHA-256, so a failed transaction leaves at most an unreferenced
object, never a row without its file), then the row and an audit row carrying the SHA-256 on
the record they belong to. `read` gives the bytes back to whoever may read that record and
checks them against the SHA-256.
"""

import io
import re
import unicodedata
import warnings
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from .. import storage
from ..extensions import db
from ..limits import NOTE_MAX, REASON_MAX
from ..models import Batch, BatchTest, Document, Equipment, Lot, Qualification, User
from ..models.document import DEFAULT_KIND, DOCUMENT_ENTITY_TYPES, DOCUMENT_KINDS
from . import audit
from .access import ensure_can
from .bounds import checked_text
from .clock import utcnow
from .errors import InvalidInput, InvalidState, NotAllowed, NotFound, TooLarge, Unavailable
from .sites import ensure_at_site, member_site_ids
from .transaction import transactional

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# 25 megapixels: an A4 page scanned at 600 dpi is 35, at 300 dpi 8.7; a phone photo 12. Decoding costs
# about 3 bytes a pixel (twice while it is turned upright), so the cap bounds an upload's memory too.
IMAGE_MAX_PIXELS = 25_000_000
FILENAME_MAX = 255
EXTENSIONS = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
TYPE_TEXT = {"application/pdf": "PDF", "image/png": "PNG image", "image/jpeg": "JPEG image"}
# Who may attach to a record, and who may read what is attached (with the record's own visibility).
UPLOAD_PERMISSION = {"lot": "lots.receive", "batch": "batches.compound", "batch_test": "batches.verify",
                     "qualification": "qualifications.record", "equipment": "equipment.manage"}
READ_PERMISSION = {"lot": "lots.read", "batch": "batches.read", "batch_test": "batches.read",
                   "qualification": "qualifications.read", "equipment": "equipment.read"}
ENTITY_TEXT = {"lot": "lot", "batch": "batch", "batch_test": "test result", "qualification": "qualification",
               "equipment": "equipment"}
_MODELS = {"lot": Lot, "batch": Batch, "batch_test": BatchTest, "qualification": Qualification,
           "equipment": Equipment}
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\"<>|:*?]")


def max_bytes() -> int:
    return int(current_app.config.get("DOCUMENT_MAX_BYTES") or DEFAULT_MAX_BYTES)


@dataclass(frozen=True)
class Prepared:
    """An upload that passed every check, as it will be stored."""

    filename: str
    content_type: str
    data: bytes
    sha256: str
    received_sha256: str


def sniff(data: bytes) -> str | None:
    """The type the content is, from its first bytes (magic numbers), whatever its name says."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def checked_filename(name: str | None) -> str:
    """The name as uploaded, refused when it carries a folder, a control character or no name at all."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if not name:
        raise InvalidInput("The file has no name: choose a file to upload.", field="file")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".."):
        raise InvalidInput(f"{name!r} names a folder: upload the file under its own name only (x.pdf).",
                           field="file")
    if _UNSAFE_NAME.search(name) or len(name) > FILENAME_MAX:
        raise InvalidInput(f"A file name of at most {FILENAME_MAX} characters, without control characters or "
                           "any of \" < > | : * ?.", field="file")
    return name


def prepare(data: bytes, filename: str | None) -> Prepared:
    """Every check of an upload that needs no database (pure but for the configured size limit)."""
    name = checked_filename(filename)
    if not data:
        raise InvalidInput(f"{name} is empty: nothing to keep.", field="file")
    limit = max_bytes()
    if len(data) > limit:
        # The upload is read only up to the limit and one byte: its whole size is not known here.
        raise TooLarge(f"{name} is larger than a document may be: at most {limit:,} bytes.", field="file")
    extension = ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ""
    claimed = EXTENSIONS.get(extension)
    if claimed is None:
        raise InvalidInput(f"{name}: documents are PDF, PNG or JPEG files (.pdf, .png, .jpg).", field="file")
    actual = sniff(data)
    if actual != claimed:
        what = f"a {TYPE_TEXT[actual]}" if actual else "not a PDF, PNG or JPEG file"
        raise InvalidInput(f"{name} claims to be a {TYPE_TEXT[claimed]} but its content is {what}.", field="file")
    received = storage.sha256_of(data)
    if actual == "application/pdf":
        if b"%%EOF" not in data[-2048:]:
            raise InvalidInput(f"{name} is not a complete PDF (it has no end-of-file marker).", field="file")
        return Prepared(filename=name, content_type=actual, data=data, sha256=received, received_sha256=received)
    stored = _without_metadata(data, actual, name)
    return Prepared(filename=name, content_type=actual, data=stored, sha256=storage.sha256_of(stored),
                    received_sha256=received)


def _without_metadata(data: bytes, content_type: str, name: str) -> bytes:
    """The image decoded within IMAGE_MAX_PIXELS and saved again with its pixels and colour profile only."""
    from PIL import Image, ImageOps

    fmt = "PNG" if content_type == "image/png" else "JPEG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                width, height = image.size
                if width * height > IMAGE_MAX_PIXELS:
                    raise InvalidInput(f"{name} has more pixels than an image document may have ({width} × {height}; "
                                       f"at most {IMAGE_MAX_PIXELS:,}): refused unread.", field="file")
                image.load()
                turned = image.getexif().get(0x0112, 1) not in (1, None)  # Orientation
                upright = ImageOps.exif_transpose(image) if turned else image
                upright.info.pop("comment", None)  # a JPEG comment may carry an address; only the pixels stay
                icc = image.info.get("icc_profile")
                out = io.BytesIO()
                kept = {"icc_profile": icc} if icc else {}
                if fmt == "JPEG":
                    if upright.mode not in ("RGB", "L", "CMYK"):
                        upright = upright.convert("RGB")
                    upright.save(out, "JPEG", quality=95, **kept)
                else:
                    upright.save(out, "PNG", **kept)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(f"{name} has more pixels than an image document may have (at most "
                           f"{IMAGE_MAX_PIXELS:,}): refused unread.", field="file") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidInput(f"{name} is a damaged {TYPE_TEXT[content_type]}: {error}.", field="file") from None
    return out.getvalue()


def owner(entity_type: str, entity_id: int):
    """The record a document belongs to (404 when there is none)."""
    if entity_type not in DOCUMENT_ENTITY_TYPES:
        raise InvalidInput(f"Documents attach to {', '.join(DOCUMENT_ENTITY_TYPES)}.", field="entity_type")
    item = db.session.get(_MODELS[entity_type], entity_id) if isinstance(entity_id, int) else None
    if item is None:
        raise NotFound(f"There is no such {ENTITY_TEXT[entity_type]}.")
    return item


def owner_site_id(entity_type: str, item) -> int | None:
    """The site whose members act on the record (None: a person's qualification, the chain's)."""
    if entity_type == "batch_test":
        return db.session.scalar(sa.select(Batch.site_id).where(Batch.id == item.batch_id))
    if entity_type == "qualification":
        return None
    return item.site_id


def ensure_may_read(actor: User, entity_type: str, item) -> None:
    """The read permission of the record (a person always reads their own qualifications' evidence; another
    person's only when that person is at one of the reader's sites)."""
    if entity_type == "qualification" and item.user_id == actor.id:
        return
    ensure_can(actor, READ_PERMISSION[entity_type], f"read this {ENTITY_TEXT[entity_type]}'s documents")
    if entity_type == "qualification":
        _ensure_person_in_reach(actor, item.user_id)


def person_in_reach(actor: User, person_id: int) -> bool:
    """Whether `actor` acts on this person's records: an admin (who manages every account), a chain-wide
    account, or someone sharing a site with the person (or the person is chain-wide), as the people pages
    judge it."""
    if actor.can("users.manage") or actor.all_sites:
        return True
    person = db.session.get(User, person_id)
    if person is None:
        return False
    if person.all_sites:
        return True
    mine = set(member_site_ids(actor))
    return any(site_id in mine for site_id in member_site_ids(person))


def _ensure_person_in_reach(actor: User, person_id: int) -> None:
    if not person_in_reach(actor, person_id):
        raise NotFound("There is no such qualification.")


def _ensure_not_own_evidence(actor: User, entity_type: str, item, doing: str) -> None:
    """Nobody attaches to or withdraws from the evidence of their own qualification (as nobody records it)."""
    if entity_type == "qualification":
        if item.user_id == actor.id:
            raise NotAllowed(f"You cannot {doing} your own qualification's evidence: another pharmacist or an "
                             "administrator does.")
        _ensure_person_in_reach(actor, item.user_id)


@transactional
def attach(actor: User, entity_type: str, entity_id: int, *, data: bytes, filename: str | None,
           kind: str | None = None, note: str = "") -> Document:
    """Check an upload, keep its bytes in the file store and attach it to a record (one audit row)."""
    item = owner(entity_type, entity_id)
    ensure_can(actor, UPLOAD_PERMISSION[entity_type], f"attach documents to a {ENTITY_TEXT[entity_type]}")
    _ensure_not_own_evidence(actor, entity_type, item, "attach to")
    site_id = owner_site_id(entity_type, item)
    if site_id is not None:
        ensure_at_site(actor, site_id, f"attach documents to a {ENTITY_TEXT[entity_type]}")
    kind = kind or DEFAULT_KIND[entity_type]
    if kind not in DOCUMENT_KINDS:
        raise InvalidInput(f"The kind is one of {', '.join(DOCUMENT_KINDS)}.", field="kind")
    note = checked_text(note, "note", NOTE_MAX)
    prepared = prepare(data, filename)
    target = storage.store()
    key = storage.object_key(prepared.sha256)
    try:
        target.put(key, prepared.data, prepared.content_type)
    except storage.StoreError as error:
        raise Unavailable(f"{error} Nothing was attached; try again.") from error
    document = Document(entity_type=entity_type, entity_id=item.id, kind=kind, filename=prepared.filename,
                        content_type=prepared.content_type, size=len(prepared.data), sha256=prepared.sha256,
                        received_sha256=prepared.received_sha256, store=target.kind, storage_key=key, note=note,
                        uploaded_by_id=actor.id, uploaded_at=utcnow())
    db.session.add(document)
    db.session.flush()
    audit.record(actor, "document.attached", entity_type, item.id, new={
        "document_id": document.id, "kind": kind, "filename": document.filename,
        "content_type": document.content_type, "size": document.size, "sha256": document.sha256,
        "received_sha256": document.received_sha256, "store": document.store, "note": note})
    return document


def get_document(document_id: int, *, for_update: bool = False) -> Document:
    query = sa.select(Document).where(Document.id == document_id)
    document = db.session.scalar(query.with_for_update() if for_update else query)
    if document is None:
        raise NotFound("There is no such document.")
    return document


def read(actor: User, document_id: int) -> tuple[Document, bytes]:
    """The document's bytes for someone who may read its record, checked against its SHA-256."""
    document = get_document(document_id)
    ensure_may_read(actor, document.entity_type, owner(document.entity_type, document.entity_id))
    try:
        data = storage.store(document.store).get(document.storage_key)
    except storage.StoreError as error:
        raise Unavailable(f"{error} Try again later.") from error
    if storage.sha256_of(data) != document.sha256:
        raise InvalidState(f"The stored file of {document.filename} does not match the SHA-256 recorded when it "
                           "was uploaded: it has been altered or damaged. Tell an administrator.")
    return document, data


@transactional
def withdraw(actor: User, document_id: int, reason: str) -> Document:
    """A document attached by mistake stops counting (a lot's certificate, say); it stays listed as withdrawn."""
    document = get_document(document_id, for_update=True)
    item = owner(document.entity_type, document.entity_id)
    ensure_can(actor, UPLOAD_PERMISSION[document.entity_type], "withdraw documents")
    _ensure_not_own_evidence(actor, document.entity_type, item, "withdraw from")
    site_id = owner_site_id(document.entity_type, item)
    if site_id is not None:
        ensure_at_site(actor, site_id, "withdraw documents")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the document is withdrawn.")
    if document.withdrawn_at is not None:
        raise InvalidState(f"{document.filename} is already withdrawn.")
    if document.entity_type == "lot" and document.kind == "certificate_of_analysis":
        _ensure_releases_keep_a_certificate(document)
    document.withdrawn_at, document.withdrawn_by_id, document.withdraw_reason = utcnow(), actor.id, reason
    audit.record(actor, "document.withdrawn", document.entity_type, document.entity_id,
                 old={"document_id": document.id, "sha256": document.sha256, "withdrawn": False},
                 new={"document_id": document.id, "withdrawn": True}, reason=reason)
    return document


def _ensure_releases_keep_a_certificate(document: Document) -> None:
    """Refuse (409) to withdraw the last standing certificate a released lot (this one, or one split from it)
    rests on: its release would then rest on nothing, with no reason recorded."""
    tree = sa.select(Lot.id).where(Lot.id == document.entity_id).cte("lineage", recursive=True)
    tree = tree.union_all(sa.select(Lot.id).where(Lot.parent_lot_id == tree.c.id))
    released = db.session.scalars(sa.select(Lot).where(Lot.id.in_(sa.select(tree.c.id)),
                                                       Lot.released_at.is_not(None),
                                                       Lot.released_without_coa_reason == "")).all()
    for lot in released:
        others = db.session.scalar(sa.select(sa.exists().where(
            Document.entity_type == "lot", Document.entity_id.in_(lot_lineage_ids(lot)),
            Document.kind == "certificate_of_analysis", Document.withdrawn_at.is_(None),
            Document.id != document.id)))
        if not others:
            raise InvalidState(f"{lot.code} was released on it: attach the right certificate first, then withdraw "
                               f"{document.filename}.")


def documents_of(entity_type: str, entity_ids) -> dict[int, list[Document]]:
    """The documents of many records of one type (withdrawn ones too, last), in one statement."""
    ids = list(entity_ids)
    found: dict[int, list[Document]] = {i: [] for i in ids}
    if ids:
        for document in db.session.scalars(sa.select(Document).where(
                Document.entity_type == entity_type, Document.entity_id.in_(ids))
                .order_by(Document.withdrawn_at.is_not(None), Document.id)):
            found[document.entity_id].append(document)
    return found


def lot_lineage_ids(lot: Lot) -> list[int]:
    """The lot and the lots it was split from (a child lot is its parent's supplier lot)."""
    ids, parent = [lot.id], lot.parent_lot_id
    while parent is not None and parent not in ids:
        ids.append(parent)
        parent = db.session.scalar(sa.select(Lot.parent_lot_id).where(Lot.id == parent))
    return ids


def has_certificate(lot: Lot) -> bool:
    """A certificate of analysis, not withdrawn, is attached to the lot or to the lot it was split from."""
    return db.session.scalar(sa.select(sa.exists().where(
        Document.entity_type == "lot", Document.entity_id.in_(lot_lineage_ids(lot)),
        Document.kind == "certificate_of_analysis", Document.withdrawn_at.is_(None)))) is True


