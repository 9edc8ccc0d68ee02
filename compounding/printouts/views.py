"""Label print pages (one label per page, or a grid on A4) and a batch's accompanying record."""

from flask import Blueprint, current_app, render_template, request, url_for
from markupsafe import Markup

from .. import labels
from ..security import requires
from . import record
from .forms import A4_GRID, PrintOptionsForm

bp = Blueprint("printouts", __name__)


def _render(template: str, *, code: str, back_url: str | None, **context):
    """The label page for the options in the query string; 400 with the reasons when they are wrong."""
    form = PrintOptionsForm(request.args)
    valid = form.validate()
    copies = form.copies.data if valid else 0
    size = form.size.data if valid else "50x30"
    columns, rows = A4_GRID[size]
    per_page = columns * rows
    pages = [list(range(start, min(start + per_page, copies))) for start in range(0, copies, per_page)]
    html = render_template(
        template, form=form, sheet=form.sheet.data if valid else "label", size=size, copies=copies,
        a4_pages=pages, back_url=back_url, barcode=Markup(labels.barcode_inline(code)), **context)
    return html, 200 if valid else 400


def _url_if_built(endpoint: str, **values) -> str | None:
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


@bp.route("/batches/<int:batch_id>/label")
@requires("batches.read")
def batch_label(batch_id: int):
    label = labels.batch_label(labels.load_batch(batch_id))
    return _render("printouts/batch_label.html", code=label.batch_code, label=label,
                   record_url=url_for("printouts.batch_record", batch_id=batch_id),
                   back_url=_url_if_built("batches.batch_detail", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/record")
@requires("batches.read")
def batch_record(batch_id: int):
    sheet = record.batch_record(record.load_batch(batch_id))
    return render_template("printouts/batch_record.html", record=sheet, label=sheet.label,
                           label_url=url_for("printouts.batch_label", batch_id=batch_id),
                           back_url=_url_if_built("batches.batch_detail", batch_id=batch_id),
                           barcode=Markup(labels.barcode_inline(sheet.label.batch_code)))


@bp.route("/lots/<int:lot_id>/label")
@requires("lots.read")
def lot_label(lot_id: int):
    label = labels.lot_label(labels.load_lot(lot_id))
    return _render("printouts/lot_label.html", code=label.lot_code, label=label,
                   back_url=_url_if_built("lots.lot_detail", lot_id=lot_id))
