"""Demo data for trying the application: realistic, idempotent, made through the services."""

from collections.abc import Iterator
from decimal import Decimal

import sqlalchemy as sa

from .extensions import db
from .models import Ingredient, IngredientGtin, User
from .services import audit, users

DEMO_PASSWORD = "meso-demo-2026"

DEMO_USERS = [
    ("admin", "Alex Admin", "admin"),
    ("pharmacist", "Dr Paula Reyes", "pharmacist"),
    ("pharmacist2", "Dr Omar Haddad", "pharmacist"),
    ("technician", "Tom Baker", "technician"),
    ("practitioner", "Dr Nina Costa", "practitioner"),
    ("auditor", "Irene Auditor", "auditor"),
]

# name, kind, unit, strength, storage, reorder level, GTIN
DEMO_INGREDIENTS = [
    ("Phosphatidylcholine", "active", "mL", "50 mg/mL", "fridge", "20", "05012345000017"),
    ("Sodium deoxycholate", "active", "mL", "25 mg/mL", "fridge", "20", "05012345000024"),
    ("Ascorbic acid (vitamin C)", "active", "mL", "100 mg/mL", "protect_from_light", "10",
     "05012345000031"),
    ("Hyaluronic acid", "active", "mL", "10 mg/mL", "fridge", "10", "05012345000048"),
    ("Minoxidil", "active", "mL", "5 mg/mL", "room", "10", "05012345000055"),
    ("Biotin", "active", "mL", "5 mg/mL", "room", "10", "05012345000062"),
    ("Lidocaine", "diluent", "mL", "2 % (20 mg/mL)", "room", "20", "05012345000079"),
    ("Sodium chloride 0.9 %", "diluent", "mL", "0.9 %", "room", "100", "05012345000086"),
]


def _seed_users() -> Iterator[str]:
    for username, name, role in DEMO_USERS:
        if not db.session.scalar(sa.select(User.id).where(User.username == username)):
            users.create_user(None, username=username, display_name=name, role=role,
                              password=DEMO_PASSWORD)
        yield f"  user {username:<13} role {role:<13} password {DEMO_PASSWORD}"


def _seed_ingredients() -> Iterator[str]:
    for name, kind, unit, strength, storage, reorder, gtin in DEMO_INGREDIENTS:
        if db.session.scalar(sa.select(Ingredient.id).where(Ingredient.name == name)):
            continue
        ingredient = Ingredient(name=name, kind=kind, unit=unit, strength=strength,
                                storage=storage, reorder_level=Decimal(reorder),
                                gtins=[IngredientGtin(gtin=gtin)])
        db.session.add(ingredient)
        db.session.flush()
        audit.record(None, "ingredient.created", "ingredient", ingredient.id,
                     new={"name": name, "kind": kind, "unit": unit, "gtins": [gtin]},
                     reason="demo data")
        db.session.commit()
        yield f"  ingredient {name}"


def seed_demo() -> Iterator[str]:
    yield "Demo users (change these passwords before real use):"
    yield from _seed_users()
    yield "Demo ingredients:"
    yield from _seed_ingredients()
    yield "Demo data is in place."
