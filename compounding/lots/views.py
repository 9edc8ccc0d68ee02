"""Lot list, receiving, detail with ledger and history, release, reject, adjust."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..forms import SignedReasonForm, apply_domain_error, hold_form_for
from ..gs1 import GS1Error, parse_gs1
from ..models import Lot
from ..models.lot import LOT_STATUSES
from ..pages import RecordPage
from ..pagination import filter_status, paginate_entities
from ..queries.common import record_id
from ..queries.documents import certificate_of
from ..queries.ingredients import ingredient_names, ingredients_to_choose
from ..queries.lots import LotFilters, lot_list_query, lot_record
from ..queries.recalls import open_recall_ids
from ..queries.scope import shown_sites
from ..security import requires
from ..services import holds, ingredients, inventory
from ..services.errors import DomainError, NotFound
from ..services.signals import adverse_event_counts, signal_for
from ..services.signatures import signatures_for
from ..site_scope import current_scope, ensure_visible
from ..sites.forms import offer_locations
from .forms import AdjustForm, ReceiveLotForm, ReleaseForm

bp = Blueprint("lots", __name__, url_prefix="/lots")


def _ingredient_choices():
    return [SelectChoice(i.id, f"{i.name} ({i.unit})") for i in ingredients_to_choose()]


@bp.route("/")
@requires("lots.read")
def lot_list():
    filters = LotFilters.from_args(request.args)
    status = filter_status(filters.errors)
    scope = current_scope()
    pagination = paginate_entities(lot_list_query(filters, site_ids=scope), Lot.id)
    return render_template("lots/list.html", pagination=pagination, filters=filters,
                           ingredients=ingredient_names(), statuses=LOT_STATUSES, row_sites=shown_sites(scope)), status


@bp.route("/receive", methods=["GET", "POST"])
@requires("lots.receive")
def lot_receive():
    form = ReceiveLotForm()
    form.ingredient_id.choices = [SelectChoice(0, "Choose…"), *_ingredient_choices()]
    offer_locations(form.location_id, current_user)
    scan_error = None
    if request.method == "GET":
        scan_error = _prefill_from_scan(form, request.args)
    if form.validate_on_submit():
        try:
            lot = inventory.receive_lot(
                current_user, ingredient_id=form.ingredient_id.data, supplier=form.supplier.data,
                supplier_lot_number=form.lot_number.data, expires_on=form.expiry_date.parsed,
                quantity=form.quantity.parsed, gtin=form.gtin.data or "",
                coa_reference=form.coa_reference.data or "", location=form.location.data or "",
                location_id=form.location_id.data)
        except DomainError as exc:
            apply_domain_error(form, exc)
            existing = (exc.details or {}).get("existing_lot_id") if isinstance(exc.details, dict) else None
            return render_template("lots/receive.html", form=form, existing_lot_id=existing, scan_error=None), 422
        flash(f"Lot {lot.code} received into quarantine. A pharmacist must release it before use.",
              "success")
        return redirect(url_for("lots.lot_detail", lot_id=lot.id))
    status = 422 if form.errors else 200
    return render_template("lots/receive.html", form=form, existing_lot_id=None, scan_error=scan_error), status


def _prefill_from_scan(form: ReceiveLotForm, args) -> str | None:
    """Fill ingredient (by GTIN), lot number and expiry from a supplier barcode or query args."""
    values = {key: args.get(key) for key in ("gtin", "lot_number", "expiry_date")}
    values["ingredient_id"] = args.get("ingredient_id", type=record_id)
    if args.get("scan"):
        try:
            data = parse_gs1(args["scan"], current_app.config.get("GS1_SEPARATOR", ""))
        except GS1Error as exc:
            return str(exc)
        values = {"gtin": data.gtin, "lot_number": data.lot_number,
                  "expiry_date": data.expiry_date.isoformat() if data.expiry_date else None,
                  "ingredient_id": None}
    if values["gtin"] and not values["ingredient_id"]:
        ingredient = ingredients.ingredient_by_gtin(values["gtin"])
        values["ingredient_id"] = ingredient.id if ingredient else None
        if ingredient is None and args.get("scan"):
            return f"No ingredient has GTIN {values['gtin']}: choose the ingredient (and add the GTIN to it)."
    for key, value in values.items():
        if value:
            getattr(form, key).data = value
    return None


def _render_detail(lot_id: int, status: int = 200, **forms):
    ensure_visible("lot", lot_id)
    detail = lot_record(lot_id)
    if detail is None:
        raise NotFound("There is no such lot.")
    lot = detail.lot
    forms.setdefault("release_form", ReleaseForm(prefix="release"))
    forms.setdefault("reject_form", SignedReasonForm(prefix="reject"))
    forms.setdefault("adjust_form", AdjustForm(prefix="adjust"))
    item_holds = holds.holds_of("lot", lot.id)
    forms["hold_form"] = hold_form_for(item_holds, forms.get("hold_form"))
    # Why the lot is (or is not) flagged by the adverse events after it, and any recall already open.
    signal = signal_for("lot", lot.id)
    signal_recall_id = open_recall_ids().get(("lot", lot.id)) if signal and signal.flagged else None
    return render_template("lots/detail.html", lot=lot, signal=signal, signal_recall_id=signal_recall_id,
                           movements=detail.movements, history=detail.history,
                           holds=item_holds, used_in=detail.used_in, signatures=signatures_for("lot", lot.id),
                           certificate=certificate_of(lot),
                           events=adverse_event_counts("lot", [lot.id]).get(lot.id, (0, 0)), **forms), status


_PAGE = RecordPage("lots.lot_detail", "lot_id", _render_detail)


@bp.route("/<int:lot_id>")
@requires("lots.read")
def lot_detail(lot_id: int):
    return _render_detail(lot_id)


@bp.route("/<int:lot_id>/release", methods=["POST"])
@requires("lots.release")
def lot_release(lot_id: int):
    form = ReleaseForm(prefix="release")
    return _PAGE.post(lot_id, "release_form", form,
                      lambda: inventory.release_lot(current_user, lot_id, form.password.data, form.reason.data or ""),
                      lambda lot: f"{lot.code} released, signed by {current_user.display_name}.")


@bp.route("/<int:lot_id>/reject", methods=["POST"])
@requires("lots.release")
def lot_reject(lot_id: int):
    form = SignedReasonForm(prefix="reject")
    return _PAGE.post(lot_id, "reject_form", form,
                      lambda: inventory.reject_lot(current_user, lot_id, form.password.data, form.reason.data),
                      lambda lot: f"{lot.code} rejected.", "warning")


def _adjusted(lot_id: int) -> str:
    lot = inventory.get_lot(lot_id)  # reread after the commit, with its ingredient
    return f"{lot.code} adjusted: {lot.remaining} {lot.ingredient.unit} remain."


@bp.route("/<int:lot_id>/adjust", methods=["POST"])
@requires("lots.adjust")
def lot_adjust(lot_id: int):
    form = AdjustForm(prefix="adjust")
    return _PAGE.post(lot_id, "adjust_form", form,
                      lambda: inventory.adjust_lot(current_user, lot_id, reason=form.reason.data,
                                                   quantity=form.quantity.parsed, direction=form.direction.data,
                                                   note=form.note.data or "", password=form.password.data or None),
                      lambda lot: _adjusted(lot_id))


@bp.route("/<int:lot_id>/release-hold", methods=["POST"])
@requires("lots.release")
def lot_release_hold(lot_id: int):
    return _PAGE.release_hold("lot", lot_id)
