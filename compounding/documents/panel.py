"""The documents panel a record's page shows: `{{ document_panel("lot", lot.id) }}` in any template.

It lists the record's documents (withdrawn ones struck through, with their reason), links each to
its download and, for whoever may attach to that record at its site, offers the upload form and a
withdraw form per document. A page that repeats the panel (each test result of a batch) loads every
record's documents at once (`queries.documents.document_rows`) and passes each its rows and site,
so the panel adds no statement per row.
"""

from urllib.parse import urlsplit

from flask import current_app, g, request, url_for
from flask_login import current_user
from markupsafe import Markup

from ..extensions import db
from ..models import BatchTest
from ..models.document import DOCUMENT_ENTITY_TYPES, DOCUMENT_KIND_TEXT
from ..queries.documents import DocumentRow, document_rows
from ..services import documents, sites
from ..services.errors import NotFound
from .files import size_text
from .forms import WithdrawForm, blank_upload_form

UNKNOWN = object()
# The page of each kind of record: (endpoint, its id argument); a record whose area is not built goes back.
RECORD_PAGES = {"lot": ("lots.lot_detail", "lot_id"), "batch": ("batches.batch_detail", "batch_id"),
                "equipment": ("equipment.equipment_detail", "equipment_id")}


def anchor(entity_type: str, entity_id: int) -> str:
    return f"documents-{entity_type.replace('_', '-')}-{entity_id}"


def local_url(url: str | None) -> str | None:
    """`url` if it is a path of this site (never another host, scheme or a `//` path), without its fragment."""
    if not url or "\\" in url or any(ord(c) < 32 for c in url):
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def record_url(entity_type: str, entity_id: int) -> str | None:
    """The page of the record a document belongs to, when its area has one."""
    if entity_type == "batch_test":
        test = db.session.get(BatchTest, entity_id)
        if test is None:
            return None
        entity_type, entity_id = "batch", test.batch_id
    endpoint, argument = RECORD_PAGES.get(entity_type, (None, None))
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, **{argument: entity_id})


def back_to(entity_type: str, entity_id: int, posted_next: str | None) -> str:
    """Where a form of the panel leads: the page it was on, else the record's page, else the page before."""
    referrer = urlsplit(request.referrer or "")
    before = local_url(referrer.path + (f"?{referrer.query}" if referrer.query else "")) \
        if referrer.netloc == request.host else None
    page = local_url(posted_next) or record_url(entity_type, entity_id) or before or url_for("main.dashboard")
    return f"{page}#{anchor(entity_type, entity_id)}"


def _acting_site_ids() -> set[int] | None:
    """The sites the viewer acts at, read once a request (None: every site)."""
    if "_document_acting_sites" not in g:
        g._document_acting_sites = None if current_user.all_sites else set(sites.member_site_ids(current_user))
    return g._document_acting_sites


def may_attach(entity_type: str, entity_id: int, site_id=UNKNOWN) -> bool:
    """Whether the viewer may attach to (and withdraw from) this record: its upload permission, at its site."""
    if not (current_user.is_authenticated and current_user.can(documents.UPLOAD_PERMISSION[entity_type])):
        return False
    if site_id is UNKNOWN:
        try:
            site_id = documents.owner_site_id(entity_type, documents.owner(entity_type, entity_id))
        except NotFound:
            return False
    acting = _acting_site_ids()
    return site_id is None or acting is None or site_id in acting


def document_panel(entity_type: str, entity_id: int, rows: list[DocumentRow] | None = None, *, site_id=UNKNOWN,
                   compact: bool = False, heading: str = "Documents", person_id: int | None = None) -> Markup:
    """The panel of one record; `rows` and `site_id` when the page already has them (no statement then).
    `person_id`: the person a qualification is of (nobody attaches to their own evidence: no form then)."""
    if entity_type not in DOCUMENT_ENTITY_TYPES:
        raise ValueError(f"documents attach to {', '.join(DOCUMENT_ENTITY_TYPES)}, not {entity_type!r}")
    if rows is None:
        rows = document_rows(entity_type, [entity_id])[entity_id]
    attach = may_attach(entity_type, entity_id, site_id) and not (
        entity_type == "qualification" and person_id == current_user.id)
    here = request.full_path.rstrip("?") if request.method == "GET" else record_url(entity_type, entity_id)
    template = current_app.jinja_env.get_template("documents/_panel.html")
    return Markup(template.render(
        entity_type=entity_type, entity_id=entity_id, rows=rows, may_attach=attach, compact=compact,
        heading=heading, anchor=anchor(entity_type, entity_id), kind_text=DOCUMENT_KIND_TEXT,
        upload_form=blank_upload_form(entity_type, entity_id, here or "") if attach else None,
        withdraw_form=(lambda row: WithdrawForm(formdata=None, prefix=f"withdraw-{row.document.id}", next=here))
        if attach else None,
        max_size=size_text(documents.max_bytes())))


def init_app(state) -> None:
    """Registered with the blueprint: the panel and the size filter are there for every template."""
    state.app.add_template_global(document_panel)
    state.app.add_template_filter(size_text, "file_size")
