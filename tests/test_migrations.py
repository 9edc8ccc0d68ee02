"""The Alembic migrations build exactly the models' schema, and first start creates it."""

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from testkit import app_on, current_revision, drop_audit_guards, start_on_the_command_line

from compounding.extensions import db, migrate
from compounding.models import AuditEvent, Ingredient
from compounding.services import audit


def _head_revision() -> str:
    return ScriptDirectory.from_config(migrate.get_config(migrate.directory)).get_current_head()


def test_the_migrations_build_exactly_the_models_schema_on_an_empty_database(empty_database_url):
    with app_on(empty_database_url):
        with db.engine.connect() as connection:
            assert sa.inspect(connection).get_table_names() == []
        flask_migrate.upgrade(directory=migrate.directory)
        assert current_revision() == _head_revision()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
            tables = set(sa.inspect(connection).get_table_names())
    assert differences == []
    assert tables == set(db.metadata.tables) | {"alembic_version"}


def test_first_start_creates_the_schema_and_a_second_start_changes_nothing(tmp_path, monkeypatch):
    # The embedded default: `flask --app wsgi seed-demo` or `run` on an empty folder.
    url = f"sqlite:///{tmp_path / 'instance' / 'clinic.db'}"
    started = start_on_the_command_line(monkeypatch, SQLALCHEMY_DATABASE_URI=url, AUTO_MIGRATE=True)
    assert started.exit_code == 0, started.output
    with app_on(url):
        assert current_revision() == _head_revision()
        db.session.add(Ingredient(name="Biotin", kind="active", unit="mL"))
        db.session.commit()

    def no_second_upgrade(*args, **kwargs):
        raise AssertionError("the schema was already current: no upgrade should run")

    monkeypatch.setattr(flask_migrate, "upgrade", no_second_upgrade)
    started = start_on_the_command_line(monkeypatch, SQLALCHEMY_DATABASE_URI=url, AUTO_MIGRATE=True)
    assert started.exit_code == 0, started.output
    with app_on(url):
        assert current_revision() == _head_revision()
        assert db.session.scalar(sa.select(Ingredient.name)) == "Biotin"


def _patients_before_the_chart_key(rows) -> None:
    """A database at the revision before chart keys, holding these (chart number, name) patients."""
    flask_migrate.upgrade(directory=migrate.directory, revision="3c1e9a7d2b40")
    with db.engine.begin() as connection:
        for chart, name in rows:
            connection.execute(sa.text("INSERT INTO patients (chart_number, name, phone, email, created_at) "
                                       "VALUES (:chart, :name, '', '', CURRENT_TIMESTAMP)"),
                               {"chart": chart, "name": name})


def test_the_chart_key_migration_lists_chart_numbers_that_differ_only_by_case_and_stops(empty_database_url,
                                                                                         capfd):
    with app_on(empty_database_url):
        _patients_before_the_chart_key([("CH-2001", "Ana Núñez"), (" ch-2001", "Ana Nunez"), ("CH-2002", "")])
        with pytest.raises(SystemExit):  # flask_migrate logs the error and exits
            flask_migrate.upgrade(directory=migrate.directory, revision="b1a0d5e70004")
        logged = capfd.readouterr().err  # the migrations' logging config writes to stderr
        assert "'CH-2001' (patient 1), ' ch-2001' (patient 2)" in logged
        assert "CH-2002" not in logged
        assert current_revision() == "3c1e9a7d2b40"
        with db.engine.connect() as connection:  # stopped before any change: fix the data and run it again
            assert "chart_key" not in {column["name"] for column in sa.inspect(connection).get_columns("patients")}


def test_the_chart_key_migration_folds_existing_chart_numbers_and_names(empty_database_url):
    with app_on(empty_database_url):
        _patients_before_the_chart_key([(" CH-2001 ", "Ana  Núñez"), ("CH-2002", "")])
        flask_migrate.upgrade(directory=migrate.directory, revision="b1a0d5e70004")
        with db.engine.connect() as connection:
            keys = connection.execute(sa.text("SELECT chart_key, name_key FROM patients ORDER BY id")).all()
    assert [tuple(row) for row in keys] == [("ch-2001", "ana nunez"), ("ch-2002", "")]


def _set_aside_people_records() -> None:
    """What an operator exports before going back past qualifications, equipment and documents (the downgrade
    of c8e0a2f00001 refuses while they hold rows): removed here, the tests' own set-up."""
    for table in ("documents", "batch_equipment", "calibrations", "equipment", "qualifications"):
        db.session.execute(sa.text(f"DELETE FROM {table}"))
    db.session.execute(sa.text("UPDATE lots SET released_without_coa_reason = ''"))
    # And past export jobs and mail (d9b1e4f00001), where that step is not already undone.
    if sa.inspect(db.session.connection()).has_table("export_jobs"):
        for table in ("export_jobs", "mail_messages"):
            db.session.execute(sa.text(f"DELETE FROM {table}"))
        db.session.execute(sa.text("UPDATE users SET email = NULL"))
    db.session.commit()


def _demo_with_its_tests_recorded():
    """The demo data, its batch awaiting a sterility result given a pass (the old schemas know no such wait)."""
    from compounding.demo import seed_demo
    from compounding.models import Batch, User
    from compounding.services.batch_tests import record_test_result
    from compounding.services.clock import clinic_today
    from compounding.services.passwords import DEMO_PASSWORD

    for _ in seed_demo(chain=False):  # a downgrade past sites refuses a chain
        pass

    pharmacist = db.session.scalar(sa.select(User).where(User.username == "pharmacist"))
    for batch_id in db.session.scalars(sa.select(Batch.id).where(Batch.status == "awaiting_tests")).all():
        record_test_result(pharmacist, batch_id, kind="sterility", result="pass", method="rapid", lab="Demo Lab",
                           sampled_on=clinic_today(), password=DEMO_PASSWORD)
    _set_aside_people_records()


def test_the_upgrade_rebuilds_a_status_history_for_existing_lots_batches_and_recalls(empty_database_url):
    from compounding.models import Batch, Lot, StatusChange

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        _demo_with_its_tests_recorded()
        db.session.remove()  # no transaction of ours may hold a lock the migration needs
        # Back to before the status history (the held demo batch returns to released), then forward again.
        flask_migrate.downgrade(directory=migrate.directory, revision="b1a0d5e70005")
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)
        items = [("lot", lot.id, lot.status, lot.received_at) for lot in db.session.scalars(sa.select(Lot))]
        items += [("batch", b.id, b.status, b.compounded_at) for b in db.session.scalars(sa.select(Batch))]
        for kind, item_id, status, born in items:
            rows = db.session.scalars(sa.select(StatusChange).where(
                StatusChange.entity_type == kind, StatusChange.entity_id == item_id)
                .order_by(StatusChange.changed_at, StatusChange.id)).all()
            assert rows[0].from_status is None and rows[0].changed_at == born, (kind, item_id)
            assert rows[-1].to_status == status, (kind, item_id)
            assert all(a.to_status == b.from_status for a, b in zip(rows, rows[1:], strict=False)), (kind, item_id)
        verified = db.session.scalars(sa.select(Batch).where(Batch.verified_at.is_not(None))).first()
        assert db.session.scalar(sa.select(StatusChange.changed_at).where(
            StatusChange.entity_type == "batch", StatusChange.entity_id == verified.id,
            StatusChange.to_status == "released")) == verified.verified_at


# --- the audit chain keyed and append-only ------------------------------------


@pytest.mark.parametrize("statement", ["UPDATE audit_events SET reason = 'edited'", "DELETE FROM audit_events"])
def test_the_migrated_schema_refuses_to_update_or_delete_audit_rows(empty_database_url, statement):
    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        audit.record(None, "test.event", "lot", 1)
        db.session.commit()
        with pytest.raises(sa.exc.IntegrityError, match="audit rows are append-only"):
            db.session.execute(sa.text(statement))
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(sa.table("audit_events"))) == 1


def _unkeyed_rows_before_the_key(count: int) -> None:
    """A database at the revision before the key, holding `count` rows hashed as the code then did."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    flask_migrate.upgrade(directory=migrate.directory, revision="b1a0d5e70001")
    table = sa.table("audit_events", *(sa.column(c.name, c.type) for c in db.metadata.tables["audit_events"].c
                                       if c.name != "hash_scheme"))
    prev = audit.GENESIS_HASH
    with db.engine.begin() as connection:
        for n in range(count):
            row = {"occurred_at": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=n), "actor_id": None,
                   "actor_name": "system", "action": "lot.received", "entity_type": "lot", "entity_id": n,
                   "old_values": None, "new_values": {"n": n}, "reason": "", "prev_hash": prev}
            row["hash"] = prev = audit.chain_hash(prev, SimpleNamespace(**row), scheme="sha256")
            connection.execute(sa.insert(table).values(**row))


def test_the_upgrade_keeps_old_unkeyed_rows_verifying_seals_them_and_keys_every_new_row(empty_database_url):
    with app_on(empty_database_url):
        _unkeyed_rows_before_the_key(3)
        flask_migrate.upgrade(directory=migrate.directory)
        audit.record(None, "test.event", "lot", 9)
        db.session.commit()
        rows = db.session.execute(sa.select(AuditEvent.action, AuditEvent.hash_scheme).order_by(AuditEvent.id)).all()
        assert [tuple(r) for r in rows] == [("lot.received", "sha256")] * 3 + [
            ("audit.keyed", "hmac-sha256"), ("test.event", "hmac-sha256")]
        assert audit.verify_chain().ok and audit.verify_chain().checked == 5

        # Rewriting an old row and rehashing the old rows without the key breaks at the keyed seal.
        drop_audit_guards()
        old = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id).limit(3)).all()
        old[1].reason = "rewritten"
        for before, row in zip(old, old[1:], strict=False):
            row.prev_hash = before.hash
            row.hash = audit.chain_hash(row.prev_hash, row, scheme="sha256")
        db.session.commit()
        report = audit.verify_chain()
        assert report.first_bad_id == 4 and "previous-hash" in report.problem


def test_a_downgrade_and_upgrade_again_keeps_keyed_rows_keyed(empty_database_url):
    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        audit.record(None, "test.event", "lot", 1)
        db.session.commit()
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="b1a0d5e70001")
        flask_migrate.upgrade(directory=migrate.directory)
        assert audit.verify_chain().ok and audit.verify_chain().checked == 1


# --- batch records that tell the truth -----------------------------------------


def test_the_upgrade_copies_each_component_as_its_ingredient_was_when_the_batch_was_made(empty_database_url):
    from compounding.models import BatchComponent, User
    from compounding.services import ingredients

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        _demo_with_its_tests_recorded()
        component = db.session.scalars(sa.select(BatchComponent).order_by(BatchComponent.id)).first()
        ingredient = db.session.get(Ingredient, component.ingredient_id)
        made_with = (ingredient.name, ingredient.strength)
        pharmacist = db.session.scalar(sa.select(User).where(User.role == "pharmacist"))
        data = {"name": ingredient.name + " (new supplier)", "kind": ingredient.kind, "unit": ingredient.unit,
                "strength": "999 mg/mL", "storage": ingredient.storage}
        ingredients.update_ingredient(pharmacist, ingredient, data)
        component_id, ingredient_id = component.id, ingredient.id
        db.session.remove()
        # Back to before the copy (the light flag becomes the old storage value again), then forward.
        flask_migrate.downgrade(directory=migrate.directory, revision="c2b0e1a00001")
        with db.engine.connect() as connection:
            old_storage = set(connection.execute(sa.text("SELECT storage FROM ingredients")).scalars())
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)
        copied = db.session.get(BatchComponent, component_id)
        assert (copied.ingredient_name, copied.ingredient_strength) == made_with
        assert db.session.get(Ingredient, ingredient_id).strength == "999 mg/mL"
        assert copied.lot_code and copied.lot_expires_on and copied.ingredient_unit
    assert "protect_from_light" in old_storage


def test_the_upgrade_turns_light_protection_storage_into_room_temperature_and_the_flag(empty_database_url):
    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory, revision="c2b0e1a00001")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO ingredients (name, kind, unit, strength, storage, reorder_level, active, created_at) "
                "VALUES ('Ascorbic acid', 'active', 'mL', '100 mg/mL', 'protect_from_light', 0, true, "
                "'2026-01-01 00:00:00'), ('Sodium chloride 0.9 %', 'diluent', 'mL', '0.9 %', 'room', 0, true, "
                "'2026-01-01 00:00:00')"))
        flask_migrate.upgrade(directory=migrate.directory)
        rows = {i.name: i for i in db.session.scalars(sa.select(Ingredient))}
    vitamin_c, saline = rows["Ascorbic acid"], rows["Sodium chloride 0.9 %"]
    assert (vitamin_c.storage, vitamin_c.protect_from_light, vitamin_c.vehicle) == ("room", True, False)
    assert (saline.storage, saline.protect_from_light, saline.vehicle) == ("room", False, True)


def test_the_downgrade_stops_while_a_batch_awaits_its_test_results(empty_database_url):
    from compounding.demo import seed_demo
    from compounding.models import Batch

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        for _ in seed_demo(chain=False):  # a downgrade past sites refuses a chain
            pass
        _set_aside_people_records()
        waiting = db.session.scalar(sa.select(Batch.code).where(Batch.status == "awaiting_tests"))
        db.session.remove()
        with pytest.raises(SystemExit):  # Flask-Migrate logs the migration's error naming the batch, then exits
            flask_migrate.downgrade(directory=migrate.directory, revision="c2b0e1a00001")
        db.session.remove()
        # Stopped by the migration that refuses, nothing it would have dropped gone. PostgreSQL runs the
        # whole downgrade in one transaction (back at head); SQLite's DDL commits each migration's.
        assert current_revision() == ("d4c0b1a00001" if db.engine.dialect.name == "sqlite" else _head_revision())
        assert db.session.scalar(sa.select(Batch.status).where(Batch.code == waiting)) == "awaiting_tests"


def test_the_upgrade_makes_an_unverified_batch_of_a_tested_category_owe_its_tests(empty_database_url):
    from compounding.demo import seed_demo
    from compounding.models import Batch, Formula

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        for _ in seed_demo(chain=False):  # a downgrade past sites refuses a chain
            pass
        _set_aside_people_records()
        prepared = db.session.scalar(sa.select(Batch).where(Batch.status == "prepared"))
        prepared_id = prepared.id
        db.session.get(Formula, prepared.formula_id).bud_category = "category_3_aseptic_tested"
        waiting = db.session.scalars(sa.select(Batch).where(Batch.status == "awaiting_tests")).all()
        for batch in waiting:  # the old schema has no such status: rejected before the downgrade
            batch.status = "rejected"
        db.session.commit()
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="c2b0e1a00001")
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)
        batch = db.session.get(Batch, prepared_id)
        assert (batch.status, batch.tests_required) == ("prepared", ("sterility", "endotoxin"))


def test_the_upgrade_gives_existing_batches_legacy_vials_for_the_volume_they_have_left(empty_database_url):
    from decimal import Decimal

    from compounding.demo import seed_demo
    from compounding.models import Batch, Formula, SessionUse, StatusChange, Vial

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        for _ in seed_demo(chain=False):  # a downgrade past sites refuses a chain
            pass
        _set_aside_people_records()
        db.session.remove()
        # Back to pooled batches, then forward: every batch is now one "made before vials".
        flask_migrate.downgrade(directory=migrate.directory, revision="d4c0b1a00001")
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)
        uses_before = db.session.scalar(sa.select(sa.func.count(SessionUse.id)))
        checked = 0
        for batch in db.session.scalars(sa.select(Batch).order_by(Batch.id)):
            vials = list(db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id).order_by(Vial.number)))
            unit = db.session.get(Formula, batch.formula_id).unit_volume_ml
            if batch.status in ("depleted", "rejected", "discarded") or batch.remaining_volume_ml == 0:
                assert vials == []
                continue
            checked += 1
            assert all(v.legacy and v.dose == "single" for v in vials)
            assert sum(v.remaining_ml for v in vials) == batch.remaining_volume_ml
            assert [v.code for v in vials] == [f"{batch.code}-{n:02d}" for n in range(1, len(vials) + 1)]
            assert all(v.remaining_ml == unit for v in vials[:-1])
            last = vials[-1]
            own = {"on_hold": "on_hold", "recalled": "recalled"}.get(batch.status)
            assert last.status == own or (last.status == ("sealed" if last.remaining_ml == unit else "open"))
            history = db.session.scalars(sa.select(StatusChange.to_status).where(
                StatusChange.entity_type == "vial", StatusChange.entity_id == last.id)
                .order_by(StatusChange.id)).all()
            assert history[-1] == last.status
        assert checked >= 3
        # Their past uses stay pooled on the batch, as recorded.
        assert db.session.scalar(sa.select(sa.func.count(SessionUse.id)).where(SessionUse.vial_id.is_not(None))) == 0
        assert db.session.scalar(sa.select(sa.func.count(SessionUse.id))) == uses_before
        assert Decimal("0") not in {v.volume_ml for v in db.session.scalars(sa.select(Vial))}


def test_the_downgrade_stops_while_a_vial_is_held_on_its_own(empty_database_url):
    from compounding.demo import seed_demo
    from compounding.models import Hold, User
    from compounding.services import holds

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        for _ in seed_demo(chain=False):  # a downgrade past sites refuses a chain
            pass
        _set_aside_people_records()
        held = db.session.scalar(sa.select(Hold).where(Hold.entity_type == "vial", Hold.released_at.is_(None)))
        batch_holds = db.session.scalars(sa.select(Hold).where(Hold.entity_type == "batch",
                                                               Hold.released_at.is_(None))).all()
        pharmacist = db.session.scalar(sa.select(User).where(User.username == "pharmacist"))
        for hold in batch_holds:  # every batch free again; the vial keeps its own hold
            holds.release_hold(pharmacist, "batch", hold.entity_id, hold.kind, "investigated", "meso-demo-2026")
        vial_id = held.entity_id
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="e5d0a1b00001")  # before sites
        db.session.remove()
        with pytest.raises(SystemExit):
            flask_migrate.downgrade(directory=migrate.directory, revision="d4c0b1a00001")
        db.session.remove()
        assert current_revision() == "e5d0a1b00001"
        assert db.session.scalar(sa.select(Hold.id).where(Hold.entity_type == "vial", Hold.entity_id == vial_id))


# --- sites ------------------------------------------------------------------------


def test_the_sites_migration_puts_everything_at_main_and_its_downgrade_refuses_a_chain(empty_database_url):
    from compounding.demo import seed_demo
    from compounding.models import (
        Batch,
        Location,
        Lot,
        Site,
        StockMovement,
        TemperatureReading,
        TreatmentSession,
        User,
        UserSite,
        Vial,
    )

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory, revision="e5d0a1b00001")
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory, revision="f6a0c1d00001")
        (main,) = db.session.scalars(sa.select(Site)).all()
        # The columns of that revision (later ones add to locations).
        (store,) = db.session.execute(
            sa.select(Location.id, Location.code, Location.is_default, Location.site_id)).all()
        assert (main.code, store.code, store.is_default, store.site_id) == ("MAIN", "LOC0001", True, main.id)
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)
        for _ in seed_demo(chain=False):
            pass
        _set_aside_people_records()
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="e5d0a1b00001")
        db.session.remove()
        flask_migrate.upgrade(directory=migrate.directory)  # the demo's records, made before sites, come back
        for model in (Lot, Batch, Vial):
            assert set(db.session.execute(sa.select(model.location_id, model.site_id).distinct())) == {
                (store.id, main.id)}, model
        assert set(db.session.scalars(sa.select(StockMovement.location_id).distinct())) == {store.id}
        assert set(db.session.scalars(sa.select(TreatmentSession.site_id).distinct())) == {main.id}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UserSite)) == db.session.scalar(
            sa.select(sa.func.count()).select_from(User))
        for _ in seed_demo():  # now a chain: LYON and a transfer on the road, its fridges' readings
            pass
        db.session.remove()
        with pytest.raises(SystemExit):  # qualifications, equipment and documents are kept first
            flask_migrate.downgrade(directory=migrate.directory, revision="a7c0d1e00001")
        db.session.remove()
        # SQLite's DDL committed the (empty) step of export jobs and mail before the refusal.
        assert current_revision() == ("c8e0a2f00001" if db.engine.dialect.name == "sqlite" else _head_revision())
        _set_aside_people_records()
        db.session.remove()
        with pytest.raises(SystemExit):  # the cold chain's downgrade keeps the readings
            flask_migrate.downgrade(directory=migrate.directory, revision="f6a0c1d00002")
        db.session.remove()
        # PostgreSQL rolls the whole downgrade back; SQLite's DDL committed the step before the cold chain's.
        sqlite = db.engine.dialect.name == "sqlite"
        assert current_revision() == ("a7c0d1e00001" if sqlite else _head_revision())
        db.session.execute(sa.delete(TemperatureReading))
        db.session.commit()
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="f6a0c1d00001")
        db.session.remove()
        with pytest.raises(SystemExit):
            flask_migrate.downgrade(directory=migrate.directory, revision="e5d0a1b00001")
        db.session.remove()
        assert current_revision() == "f6a0c1d00001"
        assert db.session.scalar(sa.select(Site.id).where(Site.code == "LYON"))


def test_the_people_migration_writes_the_usp_kinds_and_its_downgrade_keeps_a_released_lots_reason(
        empty_database_url):
    from compounding.demo import seed_demo

    with app_on(empty_database_url):
        flask_migrate.upgrade(directory=migrate.directory)
        kinds = db.session.execute(sa.text(
            "SELECT code, initial_passes, counts_cfu FROM qualification_kinds ORDER BY id")).all()
        assert [tuple(k) for k in kinds] == [("hand_hygiene_garbing", 1, False), ("gloved_fingertip", 3, True),
                                             ("media_fill", 1, False)]
        for _ in seed_demo(chain=False):
            pass
        db.session.remove()
        # The demo pharmacists' e-mail addresses (d9b1e4f00001) refuse first, then qualifications, equipment
        # and documents, which hold rows.
        with pytest.raises(SystemExit):
            flask_migrate.downgrade(directory=migrate.directory, revision="a7c0d1e00001")
        db.session.remove()
        assert current_revision() == _head_revision()
        for table in ("documents", "batch_equipment", "calibrations", "equipment", "qualifications"):
            db.session.execute(sa.text(f"DELETE FROM {table}"))
        db.session.execute(sa.text("UPDATE users SET email = NULL"))
        db.session.commit()
        db.session.remove()
        with pytest.raises(SystemExit):  # the demo's saline lot was released without a certificate, for a reason
            flask_migrate.downgrade(directory=migrate.directory, revision="a7c0d1e00001")
        db.session.remove()
        # SQLite's DDL committed the (empty) step of export jobs and mail before the refusal.
        assert current_revision() == ("c8e0a2f00001" if db.engine.dialect.name == "sqlite" else _head_revision())
        db.session.execute(sa.text("UPDATE lots SET released_without_coa_reason = ''"))
        db.session.commit()
        db.session.remove()
        flask_migrate.downgrade(directory=migrate.directory, revision="a7c0d1e00001")
        db.session.remove()
        assert current_revision() == "a7c0d1e00001"
        flask_migrate.upgrade(directory=migrate.directory)
        assert db.session.scalar(sa.text("SELECT count(*) FROM qualification_kinds")) == 3
