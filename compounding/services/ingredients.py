"""Ingredients: the master data every lot, formula and label names, and their GTINs."""

import re
from decimal import Decimal

import sqlalchemy as sa

from ..extensions import db
from ..limits import NAME_MAX
from ..models import Ingredient, IngredientGtin, Lot, User
from ..models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS
from . import audit
from .access import ensure_can
from .errors import InvalidInput, InvalidState
from .lookup import fetch
from .transaction import transactional

INGREDIENT_FIELDS = ("name", "kind", "unit", "strength", "storage", "protect_from_light", "sterile", "vehicle",
                     "reorder_level", "active")
# Yes/no attributes: a change that leaves one out keeps its value.
FLAGS = ("protect_from_light", "sterile", "vehicle")


# The first tranche's storage value for light protection, still accepted from existing clients.
LEGACY_LIGHT_STORAGE = "protect_from_light"


def with_light_as_flag(data: dict) -> dict:
    """The first tranche's storage `protect_from_light` read as room temperature + the flag."""
    if data.get("storage") == LEGACY_LIGHT_STORAGE:
        return {**data, "storage": "room", "protect_from_light": True}
    return data


def _flags(data: dict, ingredient: Ingredient | None = None) -> dict:
    return {flag: bool(data[flag]) if data.get(flag) is not None else bool(getattr(ingredient, flag, False))
            for flag in FLAGS}


def gtin_is_valid(gtin: str) -> bool:
    """GS1 mod-10 check digit over GTIN-8/12/13/14."""
    if not re.fullmatch(r"\d{8}|\d{12,14}", gtin or ""):
        return False
    digits = [int(d) for d in gtin.zfill(14)]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:-1]))
    return (10 - total % 10) % 10 == digits[-1]


def normalise_gtin(gtin: str) -> str:
    """GTINs are compared as 14 digits (a GTIN-13 is a GTIN-14 with a leading zero)."""
    return gtin.strip().zfill(14)


def _check_ingredient_fields(data: dict, ingredient: Ingredient | None = None) -> list[str]:
    name = (data.get("name") or "").strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"A name of 1 to {NAME_MAX} characters is required.", field="name")
    existing = db.session.scalar(sa.select(Ingredient).where(sa.func.lower(Ingredient.name) == name.lower()))
    if existing is not None and existing is not ingredient:
        raise InvalidState(f"An ingredient named {existing.name!r} already exists.", field="name",
                           details={"name": [f"{existing.name!r} already exists."],
                                    "existing_id": existing.id})
    for field, allowed in (("kind", INGREDIENT_KINDS), ("unit", STOCK_UNITS),
                           ("storage", STORAGE_CONDITIONS)):
        if data.get(field) not in allowed:
            raise InvalidInput(f"Choose one of: {', '.join(allowed)}.", field=field)
    # A vehicle is left off labels: only a diluent (water, sodium chloride) may be one, never a drug.
    if _flags(data, ingredient)["vehicle"] and data["kind"] != "diluent":
        raise InvalidInput("Only a diluent can be a pure vehicle (water, sodium chloride); a drug is always "
                           "printed on the label.", field="vehicle")
    try:
        reorder = Decimal(str(data.get("reorder_level") or "0"))
    except ArithmeticError:
        raise InvalidInput("Enter a number such as 20.", field="reorder_level") from None
    if not reorder.is_finite() or reorder < 0 or reorder >= Decimal("100000000000"):
        raise InvalidInput("The reorder level must be a number of zero or more.", field="reorder_level")
    gtins = []
    for raw in data.get("gtins") or []:
        raw = raw.strip()
        if not raw:
            continue
        if not gtin_is_valid(raw):
            raise InvalidInput(f"{raw} is not a valid GTIN (check digit or length).", field="gtins")
        gtin = normalise_gtin(raw)
        owner = db.session.scalar(sa.select(IngredientGtin).where(IngredientGtin.gtin == gtin))
        if owner is not None and (ingredient is None or owner.ingredient_id != ingredient.id):
            raise InvalidState(f"GTIN {gtin} already belongs to another ingredient.", field="gtins")
        if gtin not in gtins:
            gtins.append(gtin)
    return gtins


@transactional
def create_ingredient(actor: User, data: dict) -> Ingredient:
    """Add a raw material. Names are unique (case-insensitive); GTINs are valid and unclaimed."""
    ensure_can(actor, "ingredients.write", "create ingredients")
    data = with_light_as_flag(data)
    gtins = _check_ingredient_fields(data)
    ingredient = Ingredient(
        name=data["name"].strip(), kind=data["kind"], unit=data["unit"],
        strength=(data.get("strength") or "").strip(), storage=data["storage"],
        reorder_level=Decimal(str(data.get("reorder_level") or "0")),
        gtins=[IngredientGtin(gtin=g) for g in gtins], **_flags(data),
    )
    db.session.add(ingredient)
    db.session.flush()
    audit.created(actor, "ingredient.created", ingredient, INGREDIENT_FIELDS, extra={"gtins": gtins})
    return ingredient


@transactional
def update_ingredient(actor: User, ingredient: Ingredient, data: dict) -> Ingredient:
    """Edit an ingredient. Its unit cannot change once lots exist (quantities would lie)."""
    ensure_can(actor, "ingredients.write", "edit ingredients")
    data = with_light_as_flag(data)
    gtins = _check_ingredient_fields(data, ingredient)
    if data["unit"] != ingredient.unit and db.session.scalar(
        sa.select(Lot.id).where(Lot.ingredient_id == ingredient.id).limit(1)
    ):
        raise InvalidState("The stock unit cannot change once lots have been received.", field="unit")
    with audit.change(actor, "ingredient.updated", ingredient, INGREDIENT_FIELDS,
                      old={"gtins": ingredient.gtin_list}, only_if_changed=True) as change:
        ingredient.name = data["name"].strip()
        ingredient.kind = data["kind"]
        ingredient.unit = data["unit"]
        ingredient.strength = (data.get("strength") or "").strip()
        ingredient.storage = data["storage"]
        for flag, value in _flags(data, ingredient).items():
            setattr(ingredient, flag, value)
        ingredient.reorder_level = Decimal(str(data.get("reorder_level") or "0"))
        if "active" in data and data["active"] is not None:
            ingredient.active = bool(data["active"])
        current = {g.gtin: g for g in ingredient.gtins}
        ingredient.gtins = [current.get(g) or IngredientGtin(gtin=g) for g in gtins]
        change.new["gtins"] = gtins
    return ingredient


def get_ingredient(ingredient_id) -> Ingredient:
    return fetch(Ingredient, ingredient_id, InvalidInput("Unknown ingredient.", field="ingredient_id"))


def ingredient_by_gtin(gtin: str) -> Ingredient | None:
    return db.session.scalar(
        sa.select(Ingredient).join(IngredientGtin).where(IngredientGtin.gtin == normalise_gtin(gtin))
    )
