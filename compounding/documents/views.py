"""Documents: attach a file to a lot, batch, test result, qualification or equipment; download; withdraw.

Each form comes from a record's documents panel (`panel.py`) and leads back to that page with a
message: a refusal (not a PDF, PNG or JPEG, empty, too large, a name with a folder, not allowed
here) stores nothing and says why. Who may read or attach is the record's own rule
(`services.documents`: READ_PERMISSION, UPLOAD_PERMISSION, at the record's site).
"""

from flask import Blueprint, flash, redirect
from flask_login import current_user

from ..models.document import DOCUMENT_ENTITY_TYPES
from ..queries.documents import ensure_record_visible
from ..security import signed_in
from ..services import documents, sites
from ..services.errors import DomainError, NotFound
from . import files, panel
from .forms import UploadForm, WithdrawForm, upload_prefix

bp = Blueprint("documents", __name__, url_prefix="/documents")
bp.record_once(panel.init_app)

_TYPES = ", ".join(DOCUMENT_ENTITY_TYPES)


def _form_problems(form) -> str:
    """Every error of the form, each after its field's label."""
    return " ".join(f"{form[name].label.text if name in form else name}: {error}"
                    for name, errors in form.errors.items() for error in errors)


def _visible_record(entity_type: str, entity_id: int):
    """The record, or 404 when there is none or it is at a site the viewer does not see."""
    item = documents.owner(entity_type, entity_id)
    ensure_record_visible(entity_type, entity_id, sites.visible_site_ids(current_user),
                          documents.ENTITY_TEXT[entity_type])
    return item


@bp.route(f"/<any({_TYPES}):entity_type>/<int:entity_id>", methods=["POST"])
@signed_in
def document_upload(entity_type: str, entity_id: int):
    """Attach the posted file to the record (its upload permission is the service's to judge)."""
    _visible_record(entity_type, entity_id)
    form = UploadForm(prefix=upload_prefix(entity_type, entity_id))
    back = panel.back_to(entity_type, entity_id, form.next.data)
    if not form.validate_on_submit():
        flash(f"Nothing was attached: {_form_problems(form)}", "danger")
        return redirect(back)
    data, filename = files.uploaded(form.file.name)
    try:
        document = documents.attach(current_user, entity_type, entity_id, data=data, filename=filename,
                                    kind=form.kind.data or None, note=form.note.data or "")
    except NotFound:
        raise
    except DomainError as exc:
        flash(f"Nothing was attached. {exc.message}", "danger")
        return redirect(back)
    flash(f"{document.filename} attached ({files.size_text(document.size)}, SHA-256 {document.sha256[:12]}…).",
          "success")
    return redirect(back)


# A file over the limit is refused before it is read, with a page that says the limit.
document_upload.max_content_length = files.upload_limit
document_upload.too_large_message = files.too_large_message


@bp.route("/<int:document_id>")
@signed_in
def document_download(document_id: int):
    """The file as uploaded (an image without its metadata), to whoever may read its record there."""
    document, data = files.readable(current_user, document_id)
    return files.download(document, data)


@bp.route("/<int:document_id>/withdraw", methods=["POST"])
@signed_in
def document_withdraw(document_id: int):
    """Withdraw a document attached by mistake: it stays listed, struck through, with the reason."""
    document = documents.get_document(document_id)
    ensure_record_visible(document.entity_type, document.entity_id, sites.visible_site_ids(current_user))
    form = WithdrawForm(prefix=f"withdraw-{document_id}")
    back = panel.back_to(document.entity_type, document.entity_id, form.next.data)
    if not form.validate_on_submit():
        flash(f"{document.filename} was not withdrawn: {_form_problems(form)}", "danger")
        return redirect(back)
    try:
        documents.withdraw(current_user, document_id, form.reason.data)
    except DomainError as exc:
        flash(f"{document.filename} was not withdrawn. {exc.message}", "danger")
        return redirect(back)
    flash(f"{document.filename} withdrawn; it stays listed with your reason.", "warning")
    return redirect(back)
