"""Transfer pages: the list, a new transfer, one transfer (dispatch by scanning, receipt, cancel), its note."""

from decimal import Decimal, InvalidOperation

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..forms import submit
from ..models.transfer import TRANSFER_STATUSES
from ..printouts.delivery import delivery_barcodes
from ..security import requires
from ..services import site_reads, sites, transfers
from ..services.errors import InvalidInput
from ..site_scope import acting_site_id, current_scope
from . import reads
from .forms import CancelForm, DispatchForm, ReceiveForm, TransferForm, scanned_lines

bp = Blueprint("transfers", __name__, url_prefix="/transfers")


@bp.route("/")
@requires("transfers.read")
def transfer_list():
    status = request.args.get("status", "")
    status = status if status in TRANSFER_STATUSES else ""
    page = reads.transfer_list(current_scope(), status or None)
    return render_template("transfers/list.html", pagination=page, items=page.items, status=status,
                           statuses=TRANSFER_STATUSES)


@bp.route("/new", methods=["GET", "POST"])
@requires("transfers.write")
def transfer_new():
    form = TransferForm()
    form.from_site_id.choices = reads.site_choices(None if current_user.all_sites
                                                   else sites.member_site_ids(current_user))
    form.to_site_id.choices = reads.site_choices(None)
    if request.method == "GET":
        form.from_site_id.data = acting_site_id()

    def draft():
        return transfers.create_transfer(current_user, form.from_site_id.data, form.to_site_id.data,
                                         reads.line_requests(scanned_lines(form.codes.data)),
                                         note=form.note.data or "")

    transfer = submit(form, draft)
    if transfer is not None:
        flash(f"Transfer {transfer.code} drafted: scan each line out to dispatch it.", "success")
        return redirect(url_for("transfers.transfer_detail", transfer_id=transfer.id))
    return render_template("transfers/new.html", form=form), 422 if form.errors else 200


def _view(transfer_id: int):
    view = reads.transfer_record(transfer_id, current_scope())
    if view is None:
        abort(404)
    return view


def _place_choices(form: ReceiveForm, transfer) -> None:
    """The destination's active locations, the planned one (or the site's default) first."""
    planned = transfer.to_location_id or sites.default_location(transfer.to_site_id).id
    places = [node.location for node in site_reads.location_tree(transfer.to_site_id, active_only=True)]
    form.to_location_id.choices = sorted(((p.id, f"{p.code} {p.name}") for p in places),
                                         key=lambda choice: choice[0] != planned)
    if form.to_location_id.data is None:
        form.to_location_id.data = planned


def _render(transfer_id: int, status: int = 200, **forms):
    view = _view(transfer_id)
    forms.setdefault("dispatch_form", DispatchForm())
    forms.setdefault("receive_form", ReceiveForm())
    forms.setdefault("cancel_form", CancelForm())
    _place_choices(forms["receive_form"], view.transfer)
    return render_template("transfers/detail.html", view=view, transfer=view.transfer,
                           may_send=sites.may_act_at(current_user, view.transfer.from_site_id),
                           may_receive=sites.may_act_at(current_user, view.transfer.to_site_id), **forms), status


@bp.route("/<int:transfer_id>")
@requires("transfers.read")
def transfer_detail(transfer_id: int):
    return _render(transfer_id)


def _after(form, done, transfer_id: int, message: str, name: str):
    if done is not None:
        flash(message, "success")
        return redirect(url_for("transfers.transfer_detail", transfer_id=transfer_id))
    return _render(transfer_id, 422 if form.errors else 409, **{name: form})


@bp.route("/<int:transfer_id>/dispatch", methods=["POST"])
@requires("transfers.write")
def transfer_dispatch(transfer_id: int):
    form = DispatchForm()
    done = submit(form, lambda: transfers.dispatch(
        current_user, transfer_id, [code for code, _ in scanned_lines(form.scanned_codes.data)]))
    return _after(form, done, transfer_id, "Dispatched: what it carries is in transit.", "dispatch_form")


def _counts(lines) -> list[dict]:
    counts = []
    for line in lines:
        try:
            received = Decimal(request.form.get(f"received-{line.line.id}", "").strip() or "x")
            damaged = Decimal(request.form.get(f"damaged-{line.line.id}", "").strip() or "0")
        except InvalidOperation:
            raise InvalidInput(f"{line.code}: give the number received (and damaged) as numbers.",
                               field="lines") from None
        counts.append({"line_id": line.line.id, "received": received, "damaged": damaged})
    return counts


@bp.route("/<int:transfer_id>/receive", methods=["POST"])
@requires("transfers.receive")
def transfer_receive(transfer_id: int):
    form = ReceiveForm()
    view = _view(transfer_id)
    done = submit(form, lambda: transfers.receive(current_user, transfer_id, _counts(view.lines),
                                                  to_location_id=form.to_location_id.data or None))
    return _after(form, done, transfer_id, "Received: the counts are recorded on each line.", "receive_form")


@bp.route("/<int:transfer_id>/cancel", methods=["POST"])
@requires("transfers.write")
def transfer_cancel(transfer_id: int):
    form = CancelForm()
    done = submit(form, lambda: transfers.cancel(current_user, transfer_id, form.reason.data))
    return _after(form, done, transfer_id, "Transfer cancelled.", "cancel_form")


@bp.route("/<int:transfer_id>/note")
@requires("transfers.read")
def delivery_note(transfer_id: int):
    """The printable delivery note: the transfer's barcode and one per line, to scan in at the destination."""
    view = _view(transfer_id)
    return render_template("printouts/delivery_note.html", view=view, transfer=view.transfer,
                           barcodes=delivery_barcodes(view.transfer.code, view.codes),
                           back_url=url_for("transfers.transfer_detail", transfer_id=transfer_id))

