"""Label print pages (one label per page, or a grid on A4) and a batch's accompanying record."""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, request, url_for
from markupsafe import Markup

from .. import labels
from ..extensions import db
from ..models import Vial
from ..security import requires
from ..site_scope import ensure_visible
from . import record
from .forms import A4_GRID, BatchPrintOptionsForm, PrintOptionsForm

bp = Blueprint("printouts", __name__)


@dataclass
class PrintedLabel:
    """One label on the page: what it says and its barcode (shared by the copies of one code)."""

    label: object
    barcode: Markup


def _pages(items: list[PrintedLabel], sheet: str, size: str) -> list[list[PrintedLabel]]:
    """All labels on one roll, or A4 pages of as many as the grid holds."""
    if sheet != "a4":
        return [items] if items else []
    columns, rows = A4_GRID[size]
    per_page = columns * rows
    return [items[start:start + per_page] for start in range(0, len(items), per_page)]


def _render(template: str, form: PrintOptionsForm, labels_to_print: list, *, back_url: str | None, **context):
    """The label page for the options in the query string; 400 with the reasons when they are wrong."""
    valid = not form.errors
    copies = form.copies.data if valid else 0
    size = form.size.data if valid else "50x30"
    sheet = form.sheet.data if valid else "label"
    barcodes = {label.code: Markup(labels.barcode_inline(label.code)) for label in labels_to_print} if valid else {}
    items = [PrintedLabel(label, barcodes[label.code]) for label in labels_to_print for _ in range(copies)] \
        if valid else []
    html = render_template(template, form=form, sheet=sheet, size=size, copies=copies, pages=_pages(items, sheet, size),
                           count=len(items), back_url=back_url, **context)
    return html, 200 if valid else 400


def _url_if_built(endpoint: str, **values) -> str | None:
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


@bp.route("/batches/<int:batch_id>/label")
@requires("batches.read")
def batch_label(batch_id: int):
    """One label per vial (all, or a range), each `copies` times; a batch without vials prints its own code."""
    ensure_visible("batch", batch_id)
    batch = labels.load_batch(batch_id)
    form = BatchPrintOptionsForm(request.args)
    form.validate()
    last = db.session.scalar(sa.select(sa.func.max(Vial.number)).where(Vial.batch_id == batch_id))
    form.check_range(last)
    whole = labels.batch_label(batch)
    printed, skipped = [whole], []
    if last is not None and not form.errors:
        vials = labels.batch_vials(batch_id, form.vial_from.data, form.vial_to.data)
        printed = labels.vial_labels(batch, vial_from=form.vial_from.data, vial_to=form.vial_to.data)
        shown = {label.vial_code for label in printed}
        held = labels.vial_holds(vials)
        skipped = [(vial.code, held.get(vial.id) or ["hold"]) for vial in vials if vial.code not in shown]
    return _render("printouts/batch_label.html", form, printed, label=whole, skipped=skipped, vial_count=last,
                   record_url=url_for("printouts.batch_record", batch_id=batch_id),
                   back_url=_url_if_built("batches.batch_detail", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/record")
@requires("batches.read")
def batch_record(batch_id: int):
    ensure_visible("batch", batch_id)
    sheet = record.batch_record(record.load_batch(batch_id))
    return render_template("printouts/batch_record.html", record=sheet, label=sheet.label,
                           label_url=url_for("printouts.batch_label", batch_id=batch_id),
                           back_url=_url_if_built("batches.batch_detail", batch_id=batch_id),
                           barcode=Markup(labels.barcode_inline(sheet.label.batch_code)))


@bp.route("/lots/<int:lot_id>/label")
@requires("lots.read")
def lot_label(lot_id: int):
    ensure_visible("lot", lot_id)
    label = labels.lot_label(labels.load_lot(lot_id))
    form = PrintOptionsForm(request.args)
    form.validate()
    return _render("printouts/lot_label.html", form, [label], label=label,
                   back_url=_url_if_built("lots.lot_detail", lot_id=lot_id))
