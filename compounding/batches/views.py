"""Batch list, the compounding page, the batch record, verification, test results, rejection, discard."""

from decimal import Decimal, InvalidOperation

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import ReleaseHoldForm, SignatureForm, SignedReasonForm, apply_domain_error, choices, hold_form_for, submit
from ..limits import PER_PAGE_DEFAULT
from ..models import Batch, Formula, FormulaStatus, Location
from ..models._common import MAX_RECORD_ID
from ..models.batch import BATCH_STATUSES
from ..pages import RecordPage
from ..pagination import MAX_PAGE, filter_status, page_arg
from ..privacy import may_read_patients, note_access
from ..queries.batches import (
    BatchFilters,
    approved_formulas,
    batch_list_query,
    batch_record,
    batch_vials,
    find_batch_vial,
    formula_codes,
    in_use_deadline,
    in_use_period_words,
    vial_record,
)
from ..queries.documents import document_rows
from ..queries.equipment import bench_equipment, equipment_of_batch
from ..queries.recalls import open_recall_ids
from ..queries.scope import shown_sites
from ..security import requires
from ..services import batches, equipment, holds, sites, vials
from ..services.batch_tests import record_test_result
from ..services.bench_scans import check_scans
from ..services.clock import utcnow
from ..services.errors import DomainError, InvalidInput, NotFound
from ..services.preparation import tests_outstanding
from ..services.signals import adverse_event_counts, signal_for
from ..services.signatures import signatures_for
from ..services.vials import find_vial, vial_reasons_at
from ..site_scope import acting_site_id, current_scope, ensure_visible
from ..sites.forms import offer_locations
from .forms import BatchTestForm, CompoundForm, DiscardForm

bp = Blueprint("batches", __name__, url_prefix="/batches")


@bp.route("/")
@requires("batches.read")
def batch_list():
    filters = BatchFilters.from_args(request.args)
    status = filter_status(filters.errors)
    scope = current_scope()
    pagination = db.paginate(batch_list_query(filters, site_ids=scope), page=page_arg(), per_page=PER_PAGE_DEFAULT,
                             error_out=False)
    return render_template("batches/list.html", pagination=pagination, formula_codes=formula_codes(),
                           statuses=BATCH_STATUSES, now=utcnow(), row_sites=shown_sites(scope)), status


def _formula_choices():
    return [SelectChoice(0, "Choose…"),
            *[SelectChoice(f.id, f"{f.code} v{f.version} — {f.name}") for f in approved_formulas()]]


def _rows_from_request(proposal) -> tuple[list[dict], dict[int, str], dict[int, str]]:
    """Allocations and scans typed on the page: fields lot-<id>-quantity and lot-<id>-scan."""
    allocations, scans, errors = [], {}, {}
    for component in proposal:
        for lot in component.lots:
            raw = request.form.get(f"lot-{lot.id}-quantity", "").strip()
            scans[lot.id] = request.form.get(f"lot-{lot.id}-scan", "")
            if not raw:
                continue
            try:
                quantity = Decimal(raw)
            except InvalidOperation:
                errors[lot.id] = "Enter a number."
                continue
            if not quantity.is_finite() or quantity < 0 or quantity.as_tuple().exponent < -3:
                errors[lot.id] = "A quantity of zero or more, at most 3 decimals."
            elif quantity > 0:
                allocations.append({"lot_id": lot.id, "quantity": quantity})
    return allocations, scans, errors


def _proposal(form: CompoundForm):
    """The chosen approved formula and the lots FEFO proposes for it, or (formula or None, None).

    Read before validation (the page proposes lots as soon as a formula is chosen): an id beyond
    the database's integer would overflow the driver, and names no formula anyway.
    """
    if not (form.formula_id.data and form.units.data and not form.formula_id.errors
            and 0 < form.formula_id.data <= MAX_RECORD_ID):
        return None, None
    formula = db.session.get(Formula, form.formula_id.data)
    if formula is None or formula.status != FormulaStatus.APPROVED or not 1 <= form.units.data <= batches.MAX_UNITS:
        return formula, None
    # Only the lots at the site where the batch will be made (where compound_batch puts it).
    return formula, batches.propose(formula, form.units.data, site_id=_making_site_id(form))


def _making_site_id(form: CompoundForm) -> int:
    """The site of the location chosen on the form (one the user may act at), else the acting site."""
    location_id = form.location_id.data
    if isinstance(location_id, int) and 0 < location_id <= MAX_RECORD_ID:
        location = db.session.get(Location, location_id)
        if location is not None and location.active and sites.may_act_at(current_user, location.site_id):
            return location.site_id
    return acting_site_id()


def _proposed_elsewhere(proposal) -> bool:
    """Whether the posted rows name lots the proposal does not hold: they were proposed for another site (the
    location was changed after the page was shown)."""
    offered = {str(lot.id) for component in proposal for lot in component.lots}
    posted = {key.split("-")[1] for key in request.form
              if key.startswith("lot-") and key.endswith("-quantity") and request.form.get(key, "").strip()}
    return bool(posted - offered)


def _equipment_ids(form: CompoundForm) -> list[int]:
    """The equipment ticked on the page and any codes left in its scan field (each must be registered)."""
    ids = list(form.equipment_ids.data or [])
    for code in form.scanned_equipment_codes():
        item = equipment.find_by_code(code)
        if item is None:
            raise InvalidInput(f"No equipment has the code {code}: scan its label again.", field="equipment_scan")
        ids.append(item.id)
    return ids


def _compound(form: CompoundForm, formula: Formula, proposal, allocations, scans, require_scan: bool):
    """Compound with the typed quantities and scans; None (the refusal shown on the form) when refused."""
    quantities = {row["lot_id"] for row in allocations}
    expected = {lot.id: lot.code for c in proposal for lot in c.lots if lot.id in quantities}
    try:
        used = _equipment_ids(form)
        confirmed = check_scans(expected, {k: v for k, v in scans.items() if k in expected})
        return batches.compound_batch(
            current_user, formula.id, form.units.data, allocations=allocations,
            deviation_note=form.deviation_note.data or "", notes=form.notes.data or "",
            scanned_lot_ids=confirmed, require_scan=require_scan,
            preparation_started_at=form.preparation_started_utc(),
            # The location chosen, else the acting site's default (where the proposal's lots are).
            location_id=form.location_id.data or sites.default_location(_making_site_id(form)).id,
            equipment_ids=used)
    except DomainError as exc:
        apply_domain_error(form, exc)
        return None


@bp.route("/new", methods=["GET", "POST"])
@requires("batches.compound")
def batch_compound():
    posted = request.method == "POST"
    form = CompoundForm(formdata=request.form if posted else request.args)
    form.formula_id.choices = _formula_choices()
    offer_locations(form.location_id, current_user)
    form.offer_start()
    formula, proposal = _proposal(form)
    values = {lot_id: q for c in proposal for lot_id, q in c.proposed.items()} if proposal is not None else {}
    scans, row_errors = {}, {}
    require_scan = current_app.config.get("REQUIRE_SCAN_CONFIRMATION", True)
    if posted and proposal is not None and _proposed_elsewhere(proposal):
        # The location was changed to another site: propose that site's lots instead of a bare refusal.
        site = sites.get_site(_making_site_id(form))
        form.form_errors.append(f"The batch will be kept at site {site.code}: these are the lots proposed there. "
                                "Check the quantities and scans, then compound.")
    elif posted and proposal is not None and form.validate():
        allocations, scans, row_errors = _rows_from_request(proposal)
        values = {a["lot_id"]: a["quantity"] for a in allocations}
        if row_errors:
            form.form_errors.append("Some quantities are not valid: see the highlighted rows.")
        elif (batch := _compound(form, formula, proposal, allocations, scans, require_scan)) is not None:
            flash(f"Batch {batch.code} compounded and awaiting verification by a second pharmacist.", "success")
            return redirect(url_for("batches.batch_detail", batch_id=batch.id))
    elif posted:
        form.validate()
        if proposal is None and not form.errors:
            form.form_errors.append("This formula cannot be compounded: it is not an approved version.")
    # The equipment of the site where the batch will be made: required there once any is registered.
    bench = bench_equipment(_making_site_id(form)) if proposal is not None else []
    return render_template("batches/compound.html", form=form, formula=formula, proposal=proposal,
                           values=values, scans=scans, row_errors=row_errors, bench=bench,
                           chosen_equipment=set(form.equipment_ids.data or []) if posted else set(),
                           require_scan=require_scan), 422 if posted else 200


def _render_detail(batch_id: int, status: int = 200, **forms):
    ensure_visible("batch", batch_id)
    # An admin sees the batch, not who received it; others the sessions at the sites they see.
    detail = batch_record(batch_id, with_uses=may_read_patients(), site_ids=sites.visible_site_ids(current_user))
    if detail is None:
        raise NotFound("There is no such batch.")
    batch = detail.batch
    if detail.uses:  # the sessions name their patients' charts
        note_access("batch.sessions", target_type="batch", target_id=batch.id)
    forms.setdefault("verify_form", SignatureForm(prefix="verify"))
    forms.setdefault("reject_form", SignedReasonForm(prefix="reject"))
    forms.setdefault("discard_form", DiscardForm(prefix="discard"))
    outstanding = tests_outstanding(batch)
    test_form = forms.setdefault("test_form", BatchTestForm(prefix="test"))
    # Offer the tests still owed (all it requires once a result is in: a second one is refused with the reason).
    test_form.kind.choices = choices(outstanding or batch.tests_required)
    item_holds = holds.holds_of("batch", batch.id)
    forms["hold_form"] = hold_form_for(item_holds, forms.get("hold_form"))
    standing = [h.text for h in item_holds if h.released_at is None]
    signal = signal_for("batch", batch.id)
    signal_recall_id = open_recall_ids().get(("batch", batch.id)) if signal and signal.flagged else None
    vial_page = min(max(request.args.get("vial_page", 1, type=int) or 1, 1), MAX_PAGE)
    return render_template(
        "batches/detail.html", batch=batch, components=detail.components, uses=detail.uses, history=detail.history,
        vials=batch_vials(batch.id, vial_page, site_ids=current_scope()), in_use_deadline=in_use_deadline,
        equipment_used=equipment_of_batch(batch.id),
        signatures=signatures_for("batch", batch.id), reasons=batches.unusable_reasons(batch, holds=standing),
        holds=item_holds, tests=detail.tests, outstanding=outstanding,
        # Every test result's documents in one statement, however many results there are.
        test_documents=document_rows("batch_test", [test["id"] for test in detail.tests]),
        events=adverse_event_counts("batch", [batch.id]).get(batch.id, (0, 0)),
        expired=batches.is_batch_expired(batch), now=utcnow(), signal=signal, signal_recall_id=signal_recall_id,
        **forms), status


_PAGE = RecordPage("batches.batch_detail", "batch_id", _render_detail)


def _vial_or_404(batch_id: int, number: int):
    vial = find_batch_vial(batch_id, number)
    if vial is None:
        raise NotFound("There is no such vial.")
    ensure_visible("vial", vial.id)
    return vial


def _render_vial(vial, status: int = 200, **forms):
    detail = vial_record(vial, with_uses=may_read_patients(), site_ids=sites.visible_site_ids(current_user))
    if detail.uses:  # the uses name their patients' charts
        note_access("vial.sessions", target_type="vial", target_id=vial.id)
    batch, now = detail.batch, utcnow()
    standing = [h.text for h in detail.holds if h.released_at is None]
    reasons = batches.unusable_reasons(batch, now, holds=holds.hold_texts("batch", batch.id)) + \
        vial_reasons_at(vial, batch, now)
    forms["hold_form"] = hold_form_for(detail.holds, forms.get("hold_form"))
    forms.setdefault("discard_form", DiscardForm(prefix="vial-discard"))
    return render_template("batches/vial.html", vial=vial, batch=batch, history=detail.history, uses=detail.uses,
                           ledger=detail.ledger, holds=detail.holds, standing=standing, reasons=reasons,
                           in_use_until=in_use_deadline(vial, batch),
                           in_use_period=in_use_period_words(vial.in_use_hours), **forms), status


@bp.route("/<int:batch_id>/vials/<int:number>")
@requires("batches.read")
def vial_detail(batch_id: int, number: int):
    """One vial: its status history, its uses (charts only for who may see patients), ledger rows and holds."""
    return _render_vial(_vial_or_404(batch_id, number))


def _vial_action(batch_id: int, number: int, form_name: str, form, action, message, category: str = "success"):
    """Submit a form of the vial's page: flash and back to the page, or the page again (422) with the refusal."""
    vial = _vial_or_404(batch_id, number)
    result = submit(form, lambda: action(vial))
    if result is None:
        return _render_vial(_vial_or_404(batch_id, number), 422, **{form_name: form})
    flash(message(result), category)
    return redirect(url_for("batches.vial_detail", batch_id=batch_id, number=number))


@bp.route("/<int:batch_id>/vials/<int:number>/discard", methods=["POST"])
@requires("vials.discard")
def vial_discard(batch_id: int, number: int):
    """Throw one vial away (dropped, contaminated, past its in-use period): its remainder written off."""
    form = DiscardForm(prefix="vial-discard")
    return _vial_action(batch_id, number, "discard_form", form,
                        lambda vial: vials.discard_vial(current_user, vial.id, form.reason.data, form.note.data or ""),
                        lambda vial: f"{vial.code} discarded; what it held is written off.", "warning")


@bp.route("/<int:batch_id>/vials/<int:number>/release-hold", methods=["POST"])
@requires("batches.verify")
def vial_release_hold(batch_id: int, number: int):
    """A pharmacist releases one of the vial's own hold reasons (a signature)."""
    form = ReleaseHoldForm()
    return _vial_action(
        batch_id, number, "hold_form", form,
        lambda vial: holds.release_hold(current_user, "vial", vial.id, form.hold.data, form.reason.data,
                                        form.password.data),
        lambda vial: f"{form.hold.data.replace('_', ' ').capitalize()} hold on {vial.code} released, signed by "
                     f"{current_user.display_name}; it is now {vial.status.replace('_', ' ')}.")


@bp.route("/vials/<code>")
@requires("batches.read")
def vial_by_code(code: str):
    """A vial code typed or scanned: its page (a malformed code is refused with the reason, 422)."""
    vial = find_vial(code, field="code")
    return redirect(url_for("batches.vial_detail", batch_id=vial.batch_id, number=vial.number))


@bp.route("/<int:batch_id>")
@requires("batches.read")
def batch_detail(batch_id: int):
    return _render_detail(batch_id)


@bp.route("/<int:batch_id>/verify", methods=["POST"])
@requires("batches.verify")
def batch_verify(batch_id: int):
    form = SignatureForm(prefix="verify")
    return _PAGE.post(batch_id, "verify_form", form,
                      lambda: batches.verify_batch(current_user, batch_id, form.password.data),
                      _verified_message)


def _verified_message(batch) -> str:
    if batch.status == "awaiting_tests":
        return (f"{batch.code} verified, signed by {current_user.display_name}; it may not be used until its "
                f"test results are recorded ({', '.join(batch.tests_required)}).")
    return f"{batch.code} verified and released, signed by {current_user.display_name}."


@bp.route("/<int:batch_id>/tests", methods=["POST"])
@requires("batches.verify")
def batch_test_record(batch_id: int):
    form = BatchTestForm(prefix="test")
    return _PAGE.post(batch_id, "test_form", form, lambda: record_test_result(
        current_user, batch_id, kind=form.kind.data, result=form.result.data, method=form.method.data,
        lab=form.lab.data, sampled_on=form.sampled_on.data, password=form.password.data,
        units_sampled=form.units_sampled.data or 0, note=form.note.data or ""), _recorded_message)


def _recorded_message(test) -> str:
    batch = db.session.get(Batch, test.batch_id)
    return (f"{test.kind.capitalize()} result ({test.result}) recorded on {batch.code}, signed by "
            f"{current_user.display_name}; the batch is now {batch.status.replace('_', ' ')}.")


@bp.route("/<int:batch_id>/reject", methods=["POST"])
@requires("batches.verify")
def batch_reject(batch_id: int):
    form = SignedReasonForm(prefix="reject")
    return _PAGE.post(batch_id, "reject_form", form,
                      lambda: batches.reject_batch(current_user, batch_id, form.password.data, form.reason.data),
                      lambda batch: f"{batch.code} rejected.", "warning")


@bp.route("/<int:batch_id>/discard", methods=["POST"])
@requires("batches.discard")
def batch_discard(batch_id: int):
    form = DiscardForm(prefix="discard")
    return _PAGE.post(batch_id, "discard_form", form,
                      lambda: batches.discard_batch(current_user, batch_id, form.reason.data, form.note.data or ""),
                      lambda batch: f"{batch.code} discarded.", "warning")


@bp.route("/<int:batch_id>/release-hold", methods=["POST"])
@requires("batches.verify")
def batch_release_hold(batch_id: int):
    return _PAGE.release_hold("batch", batch_id)
