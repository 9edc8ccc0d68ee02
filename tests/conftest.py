"""Fixtures: an app on a real database (SQLite in memory, or TEST_DATABASE_URL), clients, users."""


import flask
import pytest
from testkit import (
    NO_COA,
    PASSWORD,
    TEST_DATABASE_URL,
    base_config,
    bearer,
    empty_postgresql_database,
    qualify,
    reset_database,
    sign_in,
)

from compounding import create_app
from compounding.extensions import db
from compounding.permissions import role_can
from compounding.services import users


@pytest.fixture
def config_overrides(request) -> dict:
    """Settings for one test: `@pytest.mark.parametrize("config_overrides", [{...}], indirect=True)`."""
    return getattr(request, "param", {})


@pytest.fixture
def app(config_overrides, tmp_path):
    # Documents go to the test's own folder, never to the checkout's instance/.
    # The job queue too: a SQLite file of the test's own.
    app = create_app(base_config(**{"FILE_STORE_PATH": str(tmp_path / "store"),
                                    "JOBS_QUEUE_PATH": str(tmp_path / "jobs.sqlite3"), **config_overrides}))
    reset_database(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    counter = {"n": 0}

    def make(role: str = "pharmacist", **overrides):
        """An account; one who compounds or verifies is qualified (every required kind) unless `qualified=False`."""
        counter["n"] += 1
        username = overrides.pop("username", f"{role}{counter['n']}")
        qualified = overrides.pop("qualified", True)
        user = users.create_user(
            None,
            username=username,
            display_name=overrides.pop("display_name", f"{role.title()} {counter['n']}"),
            role=role,
            password=overrides.pop("password", PASSWORD),
            **overrides,
        )
        if qualified and (role_can(role, "batches.compound") or role_can(role, "batches.verify")):
            qualify(user)
        return user

    return make


@pytest.fixture
def as_role(client, make_user):
    """A client signed in with a fresh account of the given role."""

    def login(role: str):
        user = make_user(role)
        sign_in(client, user)
        return user

    return login


@pytest.fixture
def admin(client, make_user):
    """An administrator, signed in on `client`."""
    user = make_user("admin", display_name="Alex Admin")
    sign_in(client, user)
    return user


@pytest.fixture
def pharmacist(make_user):
    return make_user("pharmacist")


@pytest.fixture
def technician(make_user):
    return make_user("technician")


@pytest.fixture
def make_ingredient(app, make_user):
    """Create an ingredient through the real service (a pharmacist owns it)."""
    from compounding.services import ingredients

    counter = {"n": 0}
    owner = {}

    def make(**overrides):
        counter["n"] += 1
        if "user" not in owner:
            owner["user"] = make_user("pharmacist", username=f"ingredient-owner-{id(counter)}")
        # Sterile by default: the default formula category assumes only sterile starting components.
        data = {"name": f"Ingredient {counter['n']}", "kind": "active", "unit": "mL",
                "strength": "10 mg/mL", "storage": "fridge", "sterile": True, "reorder_level": "0", "gtins": []}
        data.update(overrides)
        return ingredients.create_ingredient(owner["user"], data)

    return make


@pytest.fixture
def make_lot(app, make_user, make_ingredient):
    """Receive (and by default release) a lot through the real services.

    A technician receives and a pharmacist releases.
    """
    from datetime import date, timedelta
    from decimal import Decimal

    from compounding.services import inventory

    counter = {"n": 0}
    staff = {}

    def make(ingredient=None, *, release=True, quantity="100", expires_on=None, **overrides):
        counter["n"] += 1
        if not staff:
            staff["technician"] = make_user("technician", username=f"lot-tech-{id(counter)}")
            staff["pharmacist"] = make_user("pharmacist", username=f"lot-pharm-{id(counter)}")
        ingredient = ingredient or make_ingredient()
        lot = inventory.receive_lot(
            overrides.pop("actor", staff["technician"]),
            ingredient_id=ingredient.id,
            supplier=overrides.pop("supplier", "Supplier A"),
            supplier_lot_number=overrides.pop("supplier_lot_number", f"SL-{counter['n']}"),
            expires_on=expires_on or date.today() + timedelta(days=365),
            quantity=Decimal(quantity),
            **overrides,
        )
        if release:
            inventory.release_lot(staff["pharmacist"], lot.id, PASSWORD, reason=NO_COA)
        return lot

    return make


# --- Helpers for the foundation tests (accounts, audit trail, API) ---------------------------


@pytest.fixture
def auth_role() -> str:
    """The role `auth()` makes an account of when it is given none (a module may override it)."""
    return "pharmacist"


@pytest.fixture
def auth(make_user, auth_role):
    """Bearer headers for a fresh account of a role (`auth_role` unless named), or for the given user."""

    def headers(who=None):
        who = auth_role if who is None else who
        user = make_user(who) if isinstance(who, str) else who
        return bearer(users.create_token(None, user, "test"))

    return headers


@pytest.fixture
def make_token(app):
    """A fresh API token for a user, made by the real service."""

    def make(user, name: str = "test") -> str:
        return users.create_token(None, user, name)

    return make


@flask.request_started.connect
def _each_request_starts_with_empty_globals(sender, **extra):
    # The `app` fixture keeps one app context open and Flask reuses it for every test request,
    # so `g` (where Flask-Login caches the signed-in user and Flask-WTF the CSRF token) would
    # carry one request's user into the next, even into another client's. In production every
    # request has its own app context: give each test request a clean `g` too.
    flask.g.__dict__.clear()


@pytest.fixture
def make_formula(app, make_user, make_ingredient):
    """Create (and by default approve) a formula through the real services."""
    from compounding.services import formulas

    counter = {"n": 0}
    staff = {}

    def make(components=None, *, approve=True, **overrides):
        counter["n"] += 1
        if not staff:
            staff["pharmacist"] = make_user("pharmacist", username=f"formula-author-{id(counter)}")
            # Who wrote a version does not approve it.
            staff["approver"] = make_user("pharmacist", username=f"formula-approver-{id(counter)}")
        if components is None:
            components = [(make_ingredient(), "2"), (make_ingredient(kind="diluent"), "8")]
        data = {
            "code": f"F-{counter['n']}", "name": f"Formula {counter['n']}", "indication": "fat_reduction",
            "route": "subcutaneous", "dosage_form": "solution for injection", "unit_label": "vial 10 mL",
            "unit_volume_ml": "10", "instructions": "Mix aseptically.", "storage": "fridge",
            "bud_category": "category_2_aseptic_sterile_components",
            # A quantity of "qs" marks the diluent filled to volume.
            "components": [{"ingredient_id": i.id, "qs": True} if q == "qs" else {"ingredient_id": i.id, "quantity": q}
                           for i, q in components],
        }
        data.update(overrides)
        formula = formulas.create_formula(staff["pharmacist"], data)
        if approve:
            formulas.approve_formula(staff["approver"], formula.id, PASSWORD)
        return formula

    return make


@pytest.fixture
def make_batch(app, make_user, make_ingredient, make_lot, make_formula):
    """A compounded batch (released by default) through the real services, with its own lots."""
    from compounding.services import batches

    staff = {}

    def make(formula=None, *, units=2, release=True):
        if not staff:
            staff["technician"] = make_user("technician", username=f"batch-tech-{id(staff)}")
            staff["pharmacist"] = make_user("pharmacist", username=f"batch-pharm-{id(staff)}")
        if formula is None:
            formula = make_formula()
            for component in formula.components:
                make_lot(component.ingredient, quantity="1000")
        # The FEFO lots are allocated explicitly and every container scanned.
        allocations = [{"lot_id": lot_id, "quantity": quantity}
                       for component in batches.propose(formula, units)
                       for lot_id, quantity in component.proposed.items()]
        batch = batches.compound_batch(
            staff["technician"], formula.id, units, allocations=allocations,
            scanned_lot_ids=[a["lot_id"] for a in allocations], require_scan=True)
        if release:
            batches.verify_batch(staff["pharmacist"], batch.id, PASSWORD)
        return batch

    return make


@pytest.fixture
def multiple_dose(make_formula, make_lot):
    """An approved multiple-dose formula (48 h in use, its evidence recorded), with lots to compound it."""
    formula = make_formula(dose="multiple", in_use_hours="48", antimicrobial_evidence="AET 2026-014 passed")
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    return formula


@pytest.fixture
def make_shared_batch(make_formula, make_lot, make_batch):
    """A released batch of multiple-dose vials (28 days in use unless told): several uses and sessions draw on one
    vial."""

    def make(units=2, hours="672"):
        formula = make_formula(dose="multiple", in_use_hours=hours, antimicrobial_evidence="AET report, passed")
        for component in formula.components:
            make_lot(component.ingredient, quantity="1000")
        return make_batch(formula, units=units)

    return make


@pytest.fixture
def make_patient(app, make_user):
    from compounding.services import treatments

    counter = {"n": 0}
    staff = {}

    def make(**overrides):
        counter["n"] += 1
        if not staff:
            staff["practitioner"] = make_user("practitioner", username=f"patient-clerk-{id(counter)}")
        data = {"chart_number": f"CH-{counter['n']:05d}", "name": f"Patient {counter['n']}",
                "phone": "+44 20 7946 0000", "email": f"p{counter['n']}@example.org"}
        data.update(overrides)
        return treatments.create_patient(staff["practitioner"], data)

    return make


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner", display_name="Dr Nina Costa")


@pytest.fixture
def suspect_quantity() -> str:
    """Enough for both batches of `chain` and no more: the suspect lot ends depleted (a test may ask for more)."""
    return "8"


@pytest.fixture
def chain(practitioner, pharmacist, technician, make_ingredient, make_lot, make_formula, make_patient, make_batch,
          suspect_quantity):
    """One phosphatidylcholine lot in two batches, reaching three patients (3, 3 and 5 mL); a fourth
    patient got a batch made from other lots."""
    from compounding.services import batches, treatments

    def use(batch, volume):
        return {"batch_code": batch.code, "volume_ml": volume}

    pc = make_ingredient(name="Phosphatidylcholine")
    saline = make_ingredient(name="Saline", kind="diluent")
    # Multiple-dose: several patients draw from one vial, as the sessions below do.
    formula = make_formula([(pc, "2"), (saline, "8")], dose="multiple", in_use_hours="672",
                           antimicrobial_evidence="AET report, passed")
    suspect = make_lot(pc, quantity=suspect_quantity)
    make_lot(saline, quantity="1000")
    first = batches.compound_batch(technician, formula.id, 2)
    second = batches.compound_batch(technician, formula.id, 2)
    for batch in (first, second):
        batches.verify_batch(pharmacist, batch.id, PASSWORD)
    a, b, c, other = make_patient(), make_patient(), make_patient(), make_patient()
    sessions = [
        treatments.record_session(practitioner, patient_id=a.id, uses=[use(first, "3")]),
        treatments.record_session(practitioner, patient_id=b.id, uses=[use(first, "1"), use(second, "2")]),
        treatments.record_session(practitioner, patient_id=c.id, uses=[use(second, "4")]),
        treatments.record_session(practitioner, patient_id=c.id, uses=[use(second, "1")]),
    ]
    treatments.record_session(practitioner, patient_id=other.id, uses=[use(make_batch(), "2")])
    return {"pc": pc, "lot": suspect, "first": first, "second": second, "a": a, "b": b, "c": c, "other": other,
            "sessions": sessions, "practitioner": practitioner, "pharmacist": pharmacist, "technician": technician}


@pytest.fixture
def empty_database_url(tmp_path):
    """A database with no tables: a fresh one on the PostgreSQL server under test, else a new SQLite file."""
    if TEST_DATABASE_URL.startswith("postgresql"):
        with empty_postgresql_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"


# --- The cold chain: a fridge at MAIN, and stock kept in it ------------------------------------------


@pytest.fixture
def fridge(app):
    """Fridge 1 (FRIDGE1, 2-8 °C) at MAIN, inside the main store."""
    from sitekit import add_fridge

    from compounding.services import sites

    return add_fridge(sites.main_site().id)


@pytest.fixture
def stocked(fridge, make_batch, make_lot, pharmacist):
    """A lot and a released batch of two vials, moved into the fridge (60 days ago, as far as an excursion
    read from a logger's file can tell)."""
    from datetime import timedelta

    from sitekit import stored_since

    from compounding.services import transfers

    batch, lot = make_batch(units=2), make_lot()
    transfers.move_within_site(pharmacist, "batch", batch.id, fridge.id)
    transfers.move_within_site(pharmacist, "lot", lot.id, fridge.id)
    db.session.commit()
    stored_since(timedelta(days=60))
    return {"batch": batch, "lot": lot}


@pytest.fixture
def stocked_formula(make_formula, make_lot):
    """An approved formula with a lot of 1000 of each component: ready to compound."""
    formula = make_formula()
    for component in formula.components:
        make_lot(component.ingredient, quantity="1000")
    return formula
