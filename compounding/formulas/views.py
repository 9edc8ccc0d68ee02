"""Formula list, detail with versions and signatures, create, edit a draft, new version, approve, retire."""

import re
from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..forms import SignatureForm, submit
from ..models import Formula, FormulaStatus
from ..models.formula import FORMULA_STATUSES, INDICATIONS
from ..pages import RecordPage
from ..pagination import filter_status, paginate_rows
from ..queries.formulas import FormulaFilters, formula_list_query, formula_record
from ..queries.ingredients import ingredients_to_choose
from ..security import requires
from ..services import formulas
from ..services.bud import BUD_TABLE, bud_duration, table_duration
from ..services.errors import DomainError, NotFound
from ..services.signatures import signatures_for
from ..templating import quantity
from .forms import (
    COMPONENT_ROWS,
    FormulaForm,
    NewFormulaForm,
    NewVersionForm,
    RetireForm,
    in_use_period_text,
    in_use_words,
)

bp = Blueprint("formulas", __name__, url_prefix="/formulas")
_STEP_NUMBER = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]?|\d+[.)])\s+", re.IGNORECASE)


def duration_words(duration: timedelta | None) -> str:
    """'4 days', '12 hours': whole days when the duration is a whole number of days."""
    if duration is None:
        return "not allowed"
    hours = int(duration.total_seconds() // 3600)
    if hours >= 24 and hours % 24 == 0:
        days = hours // 24
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def instruction_steps(instructions: str) -> list[str]:
    """The instructions as numbered steps: one per line, any typed numbering ("1.", "2)") dropped."""
    return [_STEP_NUMBER.sub("", line).strip() for line in instructions.splitlines() if line.strip()]


def history_rows(events) -> list[tuple]:
    """Each audit event with only the values it changed: (event, [(key, before, after), ...])."""
    rows = []
    for event in events:
        old, new = event.old_values or {}, event.new_values or {}
        changed = [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
                   if old.get(key) != new.get(key)] if old else []
        rows.append((event, changed))
    return rows


def _ingredient_choices(formula: Formula | None = None) -> list[SelectChoice]:
    """Active ingredients, plus any inactive one the draft already lists (so it can be kept)."""
    used = [c.ingredient_id for c in formula.components] if formula is not None else []
    ingredients = ingredients_to_choose(used)
    return [SelectChoice(0, "—"), *(
        SelectChoice(i.id, f"{i.name} ({i.unit})" + ("" if i.active else " — inactive")) for i in ingredients)]


@bp.route("/")
@requires("formulas.read")
def formula_list():
    filters = FormulaFilters.from_args(request.args)
    status = filter_status(filters.errors)
    return render_template("formulas/list.html", pagination=paginate_rows(formula_list_query(filters)),
                           filters=filters, statuses=FORMULA_STATUSES, indications=INDICATIONS,
                           bud_table=BUD_TABLE), status


def _render_form(form: FormulaForm, formula: Formula | None, status: int = 200):
    return render_template("formulas/form.html", form=form, formula=formula), status


@bp.route("/new", methods=["GET", "POST"])
@requires("formulas.write")
def formula_create():
    form = NewFormulaForm()
    form.set_ingredient_choices(_ingredient_choices())
    formula = submit(form, lambda: formulas.create_formula(current_user, form.data_for_service()))
    if formula is not None:
        flash(f"{formula.label} saved as a draft. A pharmacist approves it before it can be compounded.",
              "success")
        return redirect(url_for("formulas.formula_detail", formula_id=formula.id))
    return _render_form(form, None, 422 if form.errors else 200)


@bp.route("/<int:formula_id>/edit", methods=["GET", "POST"])
@requires("formulas.write")
def formula_edit(formula_id: int):
    formula = db.get_or_404(Formula, formula_id)
    if formula.status != FormulaStatus.DRAFT:
        flash(f"{formula.label} is {formula.status} and is never edited: start a new version to change it.",
              "warning")
        return redirect(url_for("formulas.formula_detail", formula_id=formula.id))
    if request.method == "GET":
        # Values, not obj=formula: WTForms prefers obj over keyword values, and Decimals would show "10.000".
        form = FormulaForm(
            **{key: getattr(formula, key) for key in FormulaForm.EDITABLE},
            unit_volume_ml=quantity(formula.unit_volume_ml),
            **dict(zip(("in_use_period", "in_use_unit"), in_use_period_text(formula.in_use_hours), strict=True)),
            # A qs row shows no quantity: it is computed when the draft is saved.
            components=[{"ingredient_id": c.ingredient_id, "quantity": "" if c.qs else quantity(c.quantity),
                         "qs": c.qs} for c in formula.components])
        while len(form.components) < max(COMPONENT_ROWS, len(formula.components) + 2):
            form.components.append_entry()
    else:
        form = FormulaForm()
    form.set_ingredient_choices(_ingredient_choices(formula))
    saved = submit(form, lambda: formulas.update_draft(current_user, formula.id, form.data_for_service()))
    if saved is not None:
        flash(f"{formula.label} saved.", "success")
        return redirect(url_for("formulas.formula_detail", formula_id=formula.id))
    return _render_form(form, formula, 422 if form.errors else 200)


def _render_detail(formula_id: int, status: int = 200, **forms):
    detail = formula_record(formula_id)
    if detail is None:
        raise NotFound("There is no such formula.")
    formula = detail.formula
    table = table_duration(formula.bud_category, formula.storage)
    bud = {
        "label": BUD_TABLE[formula.bud_category].label,
        "duration": duration_words(bud_duration(formula.bud_category, formula.storage, formula.bud_hours)
                                   if table is not None else None),
        "table": duration_words(table),
        "shortened": formula.bud_hours is not None and table is not None
        and timedelta(hours=formula.bud_hours) < table,
    }
    forms.setdefault("approve_form", SignatureForm(prefix="approve"))
    forms.setdefault("retire_form", RetireForm(prefix="retire"))
    forms.setdefault("version_form", NewVersionForm(prefix="version"))
    return render_template(
        "formulas/detail.html", formula=formula, people=detail.people, versions=detail.versions,
        history=history_rows(detail.history), bud=bud, balance=formulas.formula_balance(formula),
        in_use_text=in_use_words(formula.in_use_hours),
        evidence=formulas.evidence_refusals(formula),
        steps=instruction_steps(formula.instructions),
        signatures=signatures_for("formula", formula.id), **forms), status


_PAGE = RecordPage("formulas.formula_detail", "formula_id", _render_detail)


@bp.route("/<int:formula_id>")
@requires("formulas.read")
def formula_detail(formula_id: int):
    return _render_detail(formula_id)


@bp.route("/<int:formula_id>/new-version", methods=["POST"])
@requires("formulas.write")
def formula_new_version(formula_id: int):
    form = NewVersionForm(prefix="version")
    if not form.validate_on_submit():
        return _render_detail(formula_id, 422, version_form=form)
    try:
        draft = formulas.new_version(current_user, formula_id)
    except DomainError as exc:
        draft_id = exc.details.get("draft_id") if isinstance(exc.details, dict) else None
        if exc.status_code == 404:
            return _render_detail(formula_id)
        flash(exc.message, "warning")
        return redirect(url_for("formulas.formula_detail", formula_id=draft_id or formula_id))
    flash(f"{draft.label} started as a draft copy: change it, then approve it.", "success")
    return redirect(url_for("formulas.formula_edit", formula_id=draft.id))


@bp.route("/<int:formula_id>/approve", methods=["POST"])
@requires("formulas.approve")
def formula_approve(formula_id: int):
    form = SignatureForm(prefix="approve")
    return _PAGE.post(formula_id, "approve_form", form,
                      lambda: formulas.approve_formula(current_user, formula_id, form.password.data),
                      lambda formula: f"{formula.label} approved, signed by {current_user.display_name}.")


@bp.route("/<int:formula_id>/retire", methods=["POST"])
@requires("formulas.write")
def formula_retire(formula_id: int):
    form = RetireForm(prefix="retire")
    return _PAGE.post(formula_id, "retire_form", form,
                      lambda: formulas.retire_formula(current_user, formula_id, form.reason.data),
                      lambda formula: f"{formula.label} retired: it can no longer be compounded.", "warning")
