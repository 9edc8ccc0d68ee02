"""Master formulation records: drafts, e-signed approval, versions, retirement.

An approved version is never edited: "edit" makes a new draft version, and approving it
retires the version it replaces. Batches keep the version they were made from.
"""

import re
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..limits import INSTRUCTIONS_MAX, LABEL_MAX, NOTE_MAX, REASON_MAX, SHORT_TEXT_MAX
from ..models import AuditEvent, Formula, FormulaComponent, FormulaStatus, Ingredient, User
from ..models.formula import INDICATIONS, ROUTES
from ..models.ingredient import STORAGE_CONDITIONS
from ..models.vial import DOSES, MAX_IN_USE_HOURS
from . import audit
from .access import ensure_can
from .balance import Balance, Line, balance
from .bounds import checked_text
from .bud import (
    BUD_TABLE,
    IMMEDIATE_USE,
    STERILE_ONLY_CATEGORIES,
    immediate_use_refusals,
    table_duration,
)
from .clock import utcnow
from .duties import ensure_second_person
from .errors import InvalidInput, InvalidState, NotFound
from .history import ensure_transition
from .ingredients import with_light_as_flag
from .inventory import check_quantity
from .lookup import fetch
from .signatures import sign
from .transaction import transactional

FORMULA_FIELDS = ("code", "version", "name", "indication", "route", "dosage_form", "unit_label",
                  "unit_volume_ml", "instructions", "storage", "protect_from_light", "bud_category", "bud_hours",
                  "bud_reason", "dose", "in_use_hours", "antimicrobial_evidence", "status")
# What the audit rows of a status change show.
STATUS = ("status",)
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,29}$")


def get_formula(formula_id, *, field: str = "formula_id") -> Formula:
    return fetch(Formula, formula_id, NotFound("There is no such formula.", field=field))


def _formula_for(actor: User, formula_id: int, step: str, permission: str = "formulas.write",
                 doing: str = "write formulas") -> Formula:
    """The formula `formula_id`, once `actor` holds `permission` and its status allows `step`."""
    ensure_can(actor, permission, doing)
    formula = get_formula(formula_id)
    ensure_transition(formula, step)
    return formula


def _text(data: dict, key: str, maximum: int, *, required: bool = True) -> str:
    return checked_text(data.get(key), key, maximum,
                        required=f"{key.replace('_', ' ').capitalize()} is required." if required else "")


def _checked_texts(data: dict) -> dict:
    """The code (upper-cased, checked against its pattern) and the free-text fields."""
    code = _text(data, "code", 30).upper()
    if not _CODE.match(code):
        raise InvalidInput("Use capitals, digits and dashes, e.g. LIPO-PCDC.", field="code")
    return {
        "code": code,
        "name": _text(data, "name", SHORT_TEXT_MAX),
        "dosage_form": _text(data, "dosage_form", LABEL_MAX),
        "unit_label": _text(data, "unit_label", LABEL_MAX, required=False) or "vial",
        "instructions": _text(data, "instructions", INSTRUCTIONS_MAX, required=False),
        "bud_reason": _text(data, "bud_reason", REASON_MAX, required=False),
    }


def _checked_choices(data: dict) -> dict:
    """The fields picked from a fixed list, in the order they are checked."""
    clean = {}
    for key, allowed in (("indication", INDICATIONS), ("route", ROUTES),
                         ("storage", STORAGE_CONDITIONS), ("bud_category", tuple(BUD_TABLE))):
        if data.get(key) not in allowed:
            raise InvalidInput(f"Choose one of: {', '.join(allowed)}.", field=key)
        clean[key] = data[key]
    return clean


def _checked_bud_hours(data: dict, clean: dict) -> int | None:
    """A formula may shorten the table's beyond-use duration, with a reason, never lengthen it."""
    maximum = table_duration(clean["bud_category"], clean["storage"])
    if maximum is None:
        raise InvalidInput(f"{BUD_TABLE[clean['bud_category']].label} preparations cannot be stored frozen.",
                           field="storage")
    hours = data.get("bud_hours")
    if hours in ("", None):
        return None
    try:
        hours = int(hours)
    except (TypeError, ValueError):
        raise InvalidInput("Give whole hours.", field="bud_hours") from None
    if hours <= 0:
        raise InvalidInput("The duration must be at least one hour.", field="bud_hours")
    if hours > maximum.total_seconds() // 3600:
        raise InvalidInput(
            f"A formula may shorten the beyond-use duration, never lengthen it: the table allows "
            f"{int(maximum.total_seconds() // 3600)} h for this category and storage.", field="bud_hours")
    if not clean["bud_reason"]:
        raise InvalidInput("Document why the duration is shorter than the table's.", field="bud_reason")
    return hours


def _component_ingredient(row: dict) -> Ingredient:
    try:
        ingredient = db.session.get(Ingredient, int(row.get("ingredient_id")))
    except (TypeError, ValueError):
        ingredient = None
    if ingredient is None:
        raise InvalidInput("Unknown ingredient in the components.", field="components")
    return ingredient


def _checked_components(rows, unit_volume: Decimal) -> list:
    """(ingredient, quantity, position, qs) for each filled row, balanced into the unit (DESIGN 10.2).

    Blank rows are skipped and an ingredient is listed once; the qs line's quantity is computed
    (whatever was sent for it is ignored). Components that cannot balance are refused (422).
    """
    components = []
    seen = set()
    for position, row in enumerate(rows):
        if not row.get("ingredient_id"):
            continue
        ingredient = _component_ingredient(row)
        if ingredient.id in seen:
            raise InvalidInput(f"{ingredient.name} is listed twice.", field="components")
        seen.add(ingredient.id)
        qs = bool(row.get("qs"))
        quantity = None if qs else check_quantity(row.get("quantity"), "components")
        components.append((ingredient, quantity, position, qs))
    if not components:
        return []  # a draft may be saved before its components are chosen; approval refuses it
    result = balance([Line(i.unit, q, qs, i.kind, i.name) for i, q, _, qs in components], unit_volume)
    if result.refusal:
        raise InvalidInput(result.refusal, field="components", details=_totals(result))
    return [(i, result.qs_quantity if qs else q, position, qs) for i, q, position, qs in components]


def _ml(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")


def _totals(result: Balance) -> dict:
    """The totals a balance refusal names, for an API client."""
    return {"components": [result.refusal], "measured_ml": _ml(result.measured_ml),
            "unit_volume_ml": _ml(result.unit_volume)}


def formula_balance(formula: Formula) -> Balance:
    """How the stored components fill the unit: the qs line is judged again, as if it were typed now."""
    return balance([Line(c.ingredient.unit, c.quantity, c.qs, c.ingredient.kind, c.ingredient.name)
                    for c in formula.components], formula.unit_volume_ml)


def ensure_balanced(formula: Formula) -> Balance:
    """Refuse (409, naming the totals) a formula whose components do not fill its unit (one made before the rule)."""
    result = formula_balance(formula)
    if result.refusal:
        raise InvalidState(f"{formula.label} does not balance: {result.refusal}", field="components",
                           details=_totals(result))
    # The qs quantity was computed when the draft was saved; an ingredient edited since may change it.
    for component in formula.components:
        if component.qs and component.quantity != result.qs_quantity:
            raise InvalidState(
                f"{formula.label}: {component.ingredient.name} is stored as {_ml(component.quantity)} mL to volume "
                f"but the unit now needs {_ml(result.qs_quantity)} mL; "
                + ("save the draft again." if formula.status == FormulaStatus.DRAFT else "make a new version."),
                field="components")
    return result


def _checked_dose(data: dict, clean: dict) -> dict:
    """Single-dose (default), or multiple-dose with an in-use period of at most 28 days and the
    antimicrobial-effectiveness evidence (USP <51>) that allows one."""
    dose = data.get("dose") or "single"
    if dose not in DOSES:
        raise InvalidInput("Choose single-dose or multiple-dose.", field="dose")
    hours = data.get("in_use_hours")
    evidence = checked_text(data.get("antimicrobial_evidence"), "antimicrobial_evidence", NOTE_MAX)
    if dose == "single":
        if hours not in ("", None):
            raise InvalidInput("An in-use period is for multiple-dose vials only: a single-dose vial serves one "
                               "patient in one session.", field="in_use_hours")
        return {"dose": dose, "in_use_hours": None, "antimicrobial_evidence": evidence}
    if clean["bud_category"] == IMMEDIATE_USE:
        raise InvalidInput("An immediate-use preparation is one unit given at once: it cannot be multiple-dose.",
                           field="dose")
    if isinstance(hours, bool):
        hours = None
    try:
        hours = int(str(hours).strip()) if hours not in ("", None) else None
    except ValueError:
        raise InvalidInput("Give the in-use period in whole hours.", field="in_use_hours") from None
    if hours is None or not 0 < hours <= MAX_IN_USE_HOURS:
        raise InvalidInput(f"A multiple-dose vial needs an in-use period of 1 to {MAX_IN_USE_HOURS} hours "
                           "(28 days) after its first puncture.", field="in_use_hours")
    if not evidence:
        raise InvalidInput("A multiple-dose vial needs its antimicrobial-effectiveness evidence (USP <51>): "
                           "name the test report.", field="antimicrobial_evidence")
    return {"dose": dose, "in_use_hours": hours, "antimicrobial_evidence": evidence}


def _checked(data: dict) -> dict:
    """Check a formula's fields and components; return clean values (nothing is written)."""
    data = with_light_as_flag(data)
    clean = _checked_texts(data)
    clean.update(_checked_choices(data))
    clean["protect_from_light"] = bool(data.get("protect_from_light"))
    clean["unit_volume_ml"] = check_quantity(data.get("unit_volume_ml"), "unit_volume_ml")
    clean["bud_hours"] = _checked_bud_hours(data, clean)
    clean.update(_checked_dose(data, clean))
    clean["components"] = _checked_components(data.get("components") or [], clean["unit_volume_ml"])
    return clean


def _apply(formula: Formula, clean: dict) -> None:
    for key, value in clean.items():
        if key != "components":
            setattr(formula, key, value)
    # Keep the rows of ingredients that stay: the unit of work inserts new rows before it
    # deletes orphans, so a fresh row for the same ingredient would break the unique key.
    current = {c.ingredient_id: c for c in formula.components}
    components = []
    for ingredient, quantity, position, qs in clean["components"]:
        component = current.get(ingredient.id) or FormulaComponent(ingredient_id=ingredient.id)
        component.quantity, component.position, component.qs = quantity, position, qs
        components.append(component)
    formula.components = components


def _snapshot(formula: Formula) -> dict:
    return {**audit.snapshot(formula, FORMULA_FIELDS),
            # normalize(): "2.500" read back from the database and "2.5" typed are the same quantity.
            "components": [{"ingredient_id": c.ingredient_id, "quantity": Decimal(c.quantity).normalize(),
                            "qs": bool(c.qs)} for c in formula.components]}


@transactional
def create_formula(actor: User, data: dict) -> Formula:
    """Create version 1 of a new formula code as a draft."""
    ensure_can(actor, "formulas.write", "write formulas")
    clean = _checked(data)
    if db.session.scalar(sa.select(Formula.id).where(Formula.code == clean["code"])):
        raise InvalidState(f"Formula {clean['code']} exists; edit it to make a new version.", field="code")
    formula = Formula(version=1, status=FormulaStatus.DRAFT, created_by_id=actor.id, created_at=utcnow())
    _apply(formula, clean)
    db.session.add(formula)
    db.session.flush()
    audit.created(actor, "formula.created", formula, _snapshot)
    return formula


@transactional
def update_draft(actor: User, formula_id: int, data: dict) -> Formula:
    """Change a draft. An approved or retired version is read-only."""
    formula = _formula_for(actor, formula_id, "edit")
    clean = _checked({**data, "code": formula.code})
    with audit.change(actor, "formula.updated", formula, _snapshot):
        _apply(formula, clean)
        db.session.flush()
    return formula


@transactional
def new_version(actor: User, formula_id: int) -> Formula:
    """Start the next version as a draft copy of an approved or retired one."""
    source = _formula_for(actor, formula_id, "new_version")
    pending = db.session.scalar(sa.select(Formula).where(Formula.code == source.code,
                                                         Formula.status == FormulaStatus.DRAFT))
    if pending is not None:
        raise InvalidState(f"{pending.label} is already a draft of this formula.",
                           details={"draft_id": pending.id})
    latest = db.session.scalar(sa.select(sa.func.max(Formula.version)).where(Formula.code == source.code))
    draft = Formula(code=source.code, version=latest + 1, status=FormulaStatus.DRAFT, created_by_id=actor.id,
                    created_at=utcnow(), previous_version_id=source.id)
    for key in FORMULA_FIELDS:
        if key not in ("code", "version", "status"):
            setattr(draft, key, getattr(source, key))
    draft.components = [FormulaComponent(ingredient_id=c.ingredient_id, quantity=c.quantity, qs=c.qs,
                                         position=c.position) for c in source.components]
    db.session.add(draft)
    db.session.flush()
    audit.created(actor, "formula.version_created", draft, _snapshot, reason=f"from {source.label}")
    return draft


@transactional
def approve_formula(actor: User, formula_id: int, password: str) -> Formula:
    """A pharmacist approves a draft with an e-signature; it replaces the approved version."""
    formula = _formula_for(actor, formula_id, "approve", "formulas.approve", "approve formulas")
    if not formula.components:
        raise InvalidState("A formula without components cannot be approved.", field="components")
    if not formula.instructions.strip():
        raise InvalidState("Write the compounding instructions before approving.", field="instructions")
    ensure_balanced(formula)
    ensure_evidence(formula)
    if actor.id in _writers(formula):
        ensure_second_person(actor, actor.id, f"You wrote {formula.label} or part of it: "
                             "a second pharmacist must approve it.")
    sign(actor, password, "approved", "formula", formula.id)
    now = utcnow()
    for previous in db.session.scalars(sa.select(Formula).where(
            Formula.code == formula.code, Formula.status == FormulaStatus.APPROVED)):
        with audit.change(actor, "formula.retired", previous, STATUS, reason=f"replaced by {formula.label}"):
            previous.status = ensure_transition(previous, "replace").to
            previous.retired_at = now
    with audit.change(actor, "formula.approved", formula, STATUS):
        formula.status = ensure_transition(formula, "approve").to
        formula.approved_at = now
        formula.approved_by_id = actor.id
    return formula


def evidence_refusals(formula: Formula) -> list[str]:
    """Why the formula's BUD category is not borne out by its components (DESIGN 10.2 "Long BUDs need evidence")."""
    products = [(c.ingredient.name, c.ingredient.sterile) for c in formula.components]
    if formula.dose == "multiple" and not (formula.antimicrobial_evidence or "").strip():
        return ["a multiple-dose preparation needs its antimicrobial-effectiveness evidence (USP <51>)"]
    if formula.bud_category == IMMEDIATE_USE:
        return immediate_use_refusals(None, products)
    if formula.bud_category in STERILE_ONLY_CATEGORIES:
        unsterile = [name for name, sterile in products if not sterile]
        if unsterile:
            return [f"{BUD_TABLE[formula.bud_category].label} assumes only sterile starting components: "
                    + ", ".join(unsterile) + (" is" if len(unsterile) == 1 else " are") + " not sterile"]
    return []


def ensure_evidence(formula: Formula) -> None:
    """Refuse (409, naming the component) a category the components cannot support."""
    reasons = evidence_refusals(formula)
    if reasons:
        raise InvalidState(f"{formula.label} cannot be approved: " + "; ".join(reasons) + ".",
                           field="bud_category", details={"reasons": reasons})


# The audit rows that write a draft's content: whoever made one of them wrote part of it.
WRITING_ACTIONS = ("formula.created", "formula.version_created", "formula.updated")


def _writers(formula: Formula) -> set[int]:
    """Who wrote any part of this version: its creator and everyone who changed the draft."""
    editors = db.session.scalars(sa.select(AuditEvent.actor_id).where(
        AuditEvent.entity_type == "formula", AuditEvent.entity_id == formula.id,
        AuditEvent.action.in_(WRITING_ACTIONS), AuditEvent.actor_id.is_not(None)))
    return {formula.created_by_id, *editors} - {None}


@transactional
def retire_formula(actor: User, formula_id: int, reason: str) -> Formula:
    """Withdraw a version from use; batches already made keep pointing to it."""
    ensure_can(actor, "formulas.write", "retire formulas")
    reason = checked_text(reason, "reason", REASON_MAX, required="Say why the formula is retired.")
    formula = get_formula(formula_id)
    rule = ensure_transition(formula, "retire")
    with audit.change(actor, "formula.retired", formula, STATUS, reason=reason):
        formula.status = rule.to
        formula.retired_at = utcnow()
    return formula


def theoretical_quantities(formula: Formula, units: int) -> list[tuple[FormulaComponent, Decimal]]:
    return [(component, component.quantity * units) for component in formula.components]
