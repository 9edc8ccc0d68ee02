"""The few reference rows (accounts, ingredients, formulas), made through the real services."""

from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

import sqlalchemy as sa

from ..demo import DEMO_INGREDIENTS, DEMO_USERS
from ..extensions import db
from ..models import Batch, Formula, FormulaStatus, Ingredient, Lot, TreatmentSession, User
from ..services import formulas, ingredients, users
from ..services.bud import bud_duration
from .spec import _INSTRUCTIONS, SCALE_FORMULAS, SCALE_MULTIPLE_DOSE, SCALE_PASSWORD, SCALE_USERS


def ensure_reference_rows() -> None:
    """Accounts, the eight demo ingredients and the approved scale formulas (idempotent)."""
    existing = set(db.session.scalars(sa.select(User.username)))
    for username, name, role in SCALE_USERS:
        if username not in existing:
            users.create_user(None, username=username, display_name=name, role=role, password=SCALE_PASSWORD)
    pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
    # Who wrote a formula does not approve it: the other pharmacist does.
    approver = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist2"))
    names = {n.lower() for n in db.session.scalars(sa.select(Ingredient.name))}
    for name, kind, unit, strength, storage, reorder, gtin, flags in DEMO_INGREDIENTS:
        if name.lower() not in names:
            claimed = ingredients.ingredient_by_gtin(gtin) is not None
            ingredients.create_ingredient(pharmacist, {
                "name": name, "kind": kind, "unit": unit, "strength": strength, "storage": storage,
                "reorder_level": Decimal(reorder), "gtins": [] if claimed else [gtin],
                **{flag: True for flag in flags}})
    ingredient_ids = dict(db.session.execute(sa.select(Ingredient.name, Ingredient.id)).all())
    for code, name, indication, route, volume, storage, category, components, _ in SCALE_FORMULAS:
        approved = Formula.code == code, Formula.status == FormulaStatus.APPROVED
        if db.session.scalar(sa.select(Formula.id).where(*approved)):
            continue
        draft = db.session.scalar(sa.select(Formula).where(Formula.code == code, Formula.status == FormulaStatus.DRAFT))
        if draft is None:
            dose = {}
            if code in SCALE_MULTIPLE_DOSE:
                hours, evidence = SCALE_MULTIPLE_DOSE[code]
                dose = {"dose": "multiple", "in_use_hours": hours, "antimicrobial_evidence": evidence}
            draft = formulas.create_formula(pharmacist, {
                "code": code, "name": name, "indication": indication, "route": route,
                "dosage_form": "solution for injection", "unit_label": f"vial {volume} mL",
                "unit_volume_ml": volume, "storage": storage, "bud_category": category,
                "instructions": _INSTRUCTIONS, **dose,
                "components": [{"ingredient_id": ingredient_ids[i], "quantity": q} for i, q in components]})
        formulas.approve_formula(approver, draft.id, SCALE_PASSWORD)


@dataclass
class Refs:
    users: dict  # username -> (id, display name)
    ingredients: dict  # name -> (id, unit, gtin or None)
    copies: dict  # id -> what a batch component copies of the ingredient
    formulas: list  # per SCALE_FORMULAS row: SimpleNamespace
    ingredient_storage: dict = field(default_factory=dict)  # id -> storage (room, fridge...)


def load_refs() -> Refs:
    people = {u.username: (u.id, u.display_name) for u in db.session.scalars(
        sa.select(User).where(User.username.in_([u for u, _, _ in SCALE_USERS])))}
    ingredients, copies, storage = {}, {}, {}
    for ingredient in db.session.scalars(sa.select(Ingredient)):
        ingredients[ingredient.name] = (ingredient.id, ingredient.unit, (ingredient.gtin_list or [None])[0])
        storage[ingredient.id] = ingredient.storage
        copies[ingredient.id] = {
            "ingredient_name": ingredient.name, "ingredient_kind": ingredient.kind,
            "ingredient_strength": ingredient.strength, "ingredient_unit": ingredient.unit,
            "ingredient_sterile": ingredient.sterile, "ingredient_vehicle": ingredient.vehicle}
    rows = []
    for code, _, indication, _, _, _, _, _, areas in SCALE_FORMULAS:
        formula = db.session.scalar(
            sa.select(Formula).where(Formula.code == code, Formula.status == FormulaStatus.APPROVED))
        duration = bud_duration(formula.bud_category, formula.storage, formula.bud_hours)
        rows.append(SimpleNamespace(
            id=formula.id, label=formula.label, indication=indication.replace("_", " "), areas=areas,
            storage=formula.storage, protect_from_light=formula.protect_from_light,
            unit_tenths=int(formula.unit_volume_ml * 10),
            # As the approved formula says (a data set seeded before vials keeps single-dose formulas).
            dose=formula.dose, in_use_hours=formula.in_use_hours,
            bud_seconds=int(duration.total_seconds()),
            components=[(c.ingredient_id, int(c.quantity * 1000)) for c in formula.components]))
    return Refs(people, ingredients, copies, rows, storage)


def foreign_records() -> int:
    """How many lots, batches, patients and sessions were made by accounts other than the seeds'."""
    seeded = [u for u, _, _ in SCALE_USERS] + [u for u, _, _ in DEMO_USERS]
    ours = sa.select(User.id).where(sa.or_(User.username.in_(seeded), User.username.like("scale.%.%")))
    return sum(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(column.not_in(ours)))
               for model, column in ((Lot, Lot.received_by_id), (Batch, Batch.compounded_by_id),
                                     (TreatmentSession, TreatmentSession.practitioner_id)))
