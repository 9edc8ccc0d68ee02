"""Document forms: an upload to a record and a withdrawal (shape only; the service checks the file)."""

from flask_wtf.file import FileField
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..forms import AppForm, choices
from ..limits import NOTE_MAX, REASON_MAX
from ..models.document import DEFAULT_KIND, DOCUMENT_KIND_TEXT, DOCUMENT_KINDS

ACCEPTED = ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"


def upload_prefix(entity_type: str, entity_id: int) -> str:
    """One upload form per record on a page (a batch and each of its test results): names and ids apart."""
    return f"doc-{entity_type}-{entity_id}"


class UploadForm(AppForm):
    file = FileField("File (PDF, PNG or JPEG)", render_kw={"accept": ACCEPTED})
    # Checked by the service (the record's usual kind when none is sent).
    kind = SelectField("Kind", choices=choices([(kind, DOCUMENT_KIND_TEXT[kind]) for kind in DOCUMENT_KINDS]),
                       validate_choice=False)
    note = StringField("Note (optional)", validators=[Optional(), Length(max=NOTE_MAX)])
    # The page the form was on: where to go back to.
    next = HiddenField()


def blank_upload_form(entity_type: str, entity_id: int, back: str) -> UploadForm:
    """The form a record's panel shows: the record's usual kind chosen, the page to come back to."""
    return UploadForm(formdata=None, prefix=upload_prefix(entity_type, entity_id), kind=DEFAULT_KIND[entity_type],
                      next=back)


class WithdrawForm(AppForm):
    reason = TextAreaField("Why it is withdrawn", render_kw={"rows": 2},
                           validators=[DataRequired("Say why the document is withdrawn."), Length(max=REASON_MAX)])
    next = HiddenField()
