"""Demo data for trying the application: realistic, idempotent, made through the services."""

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from .extensions import db
from .models import (
    Batch,
    BatchStatus,
    Equipment,
    Formula,
    FormulaStatus,
    Hold,
    Ingredient,
    Location,
    Lot,
    Patient,
    Qualification,
    Recall,
    SessionUse,
    Site,
    TemperatureReading,
    TreatmentSession,
    User,
    Vial,
)
from .services import (
    batches,
    cold_chain,
    documents,
    equipment,
    formulas,
    ingredients,
    inventory,
    qualifications,
    recalls,
    sites,
    transfers,
    treatments,
    users,
)
from .services.clock import clinic_today, utcnow
from .services.passwords import DEMO_PASSWORD

DEMO_USERS = [
    ("admin", "Alex Admin", "admin"),
    ("pharmacist", "Dr Paula Reyes", "pharmacist"),
    ("pharmacist2", "Dr Omar Haddad", "pharmacist"),
    ("technician", "Tom Baker", "technician"),
    ("practitioner", "Dr Nina Costa", "practitioner"),
    ("auditor", "Irene Auditor", "auditor"),
]
# Where the demo's pharmacists get their daily digest (a domain reserved for examples: nothing is delivered).
DEMO_EMAILS = {"pharmacist": "pharmacist@demo-clinic.example", "pharmacist2": "pharmacist2@demo-clinic.example"}

# name, kind, unit, strength, storage, reorder level, GTIN, flags (sterile, vehicle, protect_from_light)
DEMO_INGREDIENTS = [
    ("Phosphatidylcholine", "active", "mL", "50 mg/mL", "fridge", "20", "05012345000015", ()),
    ("Sodium deoxycholate", "active", "mL", "25 mg/mL", "fridge", "20", "05012345000022", ()),
    ("Ascorbic acid (vitamin C)", "active", "mL", "100 mg/mL", "room", "10", "05012345000039",
     ("sterile", "protect_from_light")),
    ("Hyaluronic acid", "active", "mL", "10 mg/mL", "fridge", "10", "05012345000046", ("sterile",)),
    ("Minoxidil", "active", "mL", "5 mg/mL", "room", "10", "05012345000053", ()),
    ("Biotin", "active", "mL", "5 mg/mL", "room", "10", "05012345000060", ()),
    ("Lidocaine", "diluent", "mL", "2 % (20 mg/mL)", "room", "20", "05012345000077", ("sterile",)),
    ("Sodium chloride 0.9 %", "diluent", "mL", "0.9 %", "room", "100", "05012345000084", ("sterile", "vehicle")),
]


def _seed_users() -> Iterator[str]:
    for username, name, role in DEMO_USERS:
        if not db.session.scalar(sa.select(User.id).where(User.username == username)):
            users.create_user(None, username=username, display_name=name, role=role,
                              password=DEMO_PASSWORD, allow_demo_password=True, email=DEMO_EMAILS.get(username))
        yield f"  user {username:<13} role {role:<13} password {DEMO_PASSWORD}"


def _seed_ingredients() -> Iterator[str]:
    pharmacist = _user("pharmacist")
    for name, kind, unit, strength, storage, reorder, gtin, flags in DEMO_INGREDIENTS:
        if db.session.scalar(sa.select(Ingredient.id).where(Ingredient.name == name)):
            continue
        ingredients.create_ingredient(pharmacist, {
            "name": name, "kind": kind, "unit": unit, "strength": strength, "storage": storage,
            "reorder_level": Decimal(reorder), "gtins": [gtin], **{flag: True for flag in flags}})
        yield f"  ingredient {name}"


# ingredient, supplier, supplier lot, days to expiry, quantity, released?
DEMO_LOTS = [
    ("Phosphatidylcholine", "Lipo Pharma GmbH", "PC-24117", 240, "400", True),
    ("Phosphatidylcholine", "Lipo Pharma GmbH", "PC-24031", 20, "30", True),
    ("Sodium deoxycholate", "Lipo Pharma GmbH", "DC-24090", 200, "250", True),
    ("Ascorbic acid (vitamin C)", "DermaChem SL", "VC-5521", 150, "50", True),
    ("Hyaluronic acid", "HyaLab Srl", "HA-0921", 300, "120", True),
    ("Hyaluronic acid", "HyaLab Srl", "HA-1002", 360, "60", False),
    ("Minoxidil", "TrichoSource Ltd", "MX-7781", 25, "40", True),
    ("Biotin", "TrichoSource Ltd", "BT-3310", 400, "40", True),
    ("Lidocaine", "Anesta Pharma", "LD-88120", 500, "200", True),
    ("Sodium chloride 0.9 %", "B. Braun", "NS-220431", 700, "500", True),
    ("Sodium chloride 0.9 %", "B. Braun", "NS-210877", 5, "50", True),
]


# A lot released before its certificate arrived, and why (the lot page and the audit workbook say so).
DEMO_LOTS_WITHOUT_COA = {"NS-210877": "Certificate requested from B. Braun; released on the supplier's "
                                      "release note, a sealed pharmacopoeial saline"}


def certificate_pdf(lot: Lot, name: str, supplier: str, number: str) -> bytes:
    """A one-page certificate of analysis as a supplier would send it (drawn here, saved as PDF)."""
    import io

    from PIL import Image, ImageDraw

    page = Image.new("RGB", (595, 842), "white")
    draw = ImageDraw.Draw(page)
    lines = [f"{supplier}", "CERTIFICATE OF ANALYSIS", "", f"Product: {name}", f"Batch / lot: {number}",
             f"Expiry: {lot.expires_on.isoformat()}", "Appearance: conforms", "Assay: 99.1 % (98.0 - 102.0 %)",
             "Sterility: conforms (USP <71>)", "Bacterial endotoxins: < 0.5 EU/mL (USP <85>)", "",
             "Released by Quality Assurance (demo document)"]
    for row, text in enumerate(lines):
        draw.text((60, 80 + row * 28), text, fill="black")
    out = io.BytesIO()
    page.save(out, "PDF", resolution=72)
    return out.getvalue()


# Valid qualifications of the demo's compounding staff: every kind passed this many days ago (the
# technician's media fill long enough ago to show as due on the dashboard).
DEMO_QUALIFIED = {"pharmacist": 40, "pharmacist2": 55, "technician": 60}
DEMO_MEDIA_FILL_DUE = {"technician": 165}


def _seed_qualifications() -> Iterator[str]:
    admin = _user("admin")
    for username, days in DEMO_QUALIFIED.items():
        person = _user(username)
        if db.session.scalar(sa.select(Qualification.id).where(Qualification.user_id == person.id).limit(1)):
            continue
        today = clinic_today()
        for kind in qualifications.required_kinds():
            back = DEMO_MEDIA_FILL_DUE.get(username, days) if kind.code == "media_fill" else days
            for step in range(kind.initial_passes, 0, -1):
                qualifications.record_qualification(
                    admin, user_id=person.id, kind=kind.code, passed_on=today - timedelta(days=back + step - 1),
                    result="pass", cfu=0 if kind.counts_cfu else None, assessor="Dr Paula Reyes (demo)")
        standing = qualifications.standings(person.id)
        yield f"  {username}: " + "; ".join(s.text for s in standing)


# code, kind, name, serial, days since calibrated, days until due
DEMO_EQUIPMENT = [
    ("BAL-01", "balance", "Analytical balance 0.1 mg", "SN-BA-22017", 60, 120),
    ("HOOD-01", "hood", "Laminar-flow hood ISO 5", "SN-LF-9931", 30, 150),
    ("PIP-01", "pipette", "Pipette 100-1000 µL", "SN-PI-4410", 90, 20),
    ("THERM-01", "thermometer", "Min/max thermometer Fridge A", "SN-TH-0077", 150, 45),
    ("BAL-02", "balance", "Precision balance 10 mg (awaiting service)", "SN-BA-18001", 368, -3),
]
# What the demo batches are made with.
DEMO_BENCH_EQUIPMENT = ("BAL-01", "HOOD-01")


def _seed_equipment() -> Iterator[str]:
    pharmacist = _user("pharmacist")
    today = clinic_today()
    for code, kind, name, serial, calibrated, due in DEMO_EQUIPMENT:
        if db.session.scalar(sa.select(Equipment.id).where(Equipment.code == code)):
            continue
        item = equipment.create_equipment(pharmacist, code=code, kind=kind, name=name, serial_number=serial,
                                          due_on=today + timedelta(days=due))
        equipment.record_calibration(pharmacist, item.id, performed_on=today - timedelta(days=calibrated),
                                     result="pass", next_due_on=today + timedelta(days=due),
                                     performed_by="Metrologia Servicios (demo)",
                                     certificate_number=f"CAL-{code}-{today.year}")
        state = f"due {item.due_on.isoformat()}" if due >= 0 else f"OVERDUE since {item.due_on.isoformat()}"
        yield f"  equipment {code:<9} {name} ({state})"


def bench_equipment_ids(site_id: int) -> list[int]:
    """The demo's balance and hood, where the site has them."""
    return list(db.session.scalars(sa.select(Equipment.id).where(Equipment.code.in_(DEMO_BENCH_EQUIPMENT),
                                                                 Equipment.site_id == site_id)))


def _user(username: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == username))


def _seed_lots() -> Iterator[str]:
    # Who received a lot does not release it.
    technician, pharmacist = _user("technician"), _user("pharmacist")
    names = dict(db.session.execute(sa.select(Ingredient.name, Ingredient.id)).all())
    for name, supplier, number, days, quantity, released in DEMO_LOTS:
        if db.session.scalar(sa.select(Lot.id).where(Lot.supplier_lot_number == number)):
            continue
        received_at = utcnow() - timedelta(days=10)
        lot = inventory.receive_lot(
            technician, ingredient_id=names[name], supplier=supplier, supplier_lot_number=number,
            expires_on=clinic_today() + timedelta(days=days), quantity=Decimal(quantity),
            coa_reference=f"CoA {number}", location="Fridge 1" if days < 365 else "Cabinet A",
            received_at=received_at)
        if number in DEMO_LOTS_WITHOUT_COA:
            reason = DEMO_LOTS_WITHOUT_COA[number]
        else:
            documents.attach(technician, "lot", lot.id, data=certificate_pdf(lot, name, supplier, number),
                             filename=f"CoA {number}.pdf", kind="certificate_of_analysis")
            reason = ""
        if released:
            inventory.release_lot(pharmacist, lot.id, DEMO_PASSWORD, reason=reason)
        yield f"  lot {lot.code} {name} {number} ({'released' if released else 'quarantine'})"
    # One lot that was in date when received and has since expired, still on the shelf.
    if not db.session.scalar(sa.select(Lot.id).where(Lot.supplier_lot_number == "MX-6650")):
        lot = inventory.receive_lot(
            technician, ingredient_id=names["Minoxidil"], supplier="TrichoSource Ltd",
            supplier_lot_number="MX-6650", expires_on=clinic_today() - timedelta(days=3),
            quantity=Decimal("12"), coa_reference="CoA MX-6650", location="Cabinet A",
            received_at=utcnow() - timedelta(days=200))
        yield f"  lot {lot.code} Minoxidil MX-6650 (expired, to discard)"


# Approved formulas, one per indication and one sterility-tested; components are per unit, in mL,
# the saline line "qs" (to volume): its quantity is what the unit volume leaves.
DEMO_FORMULAS = [
    {
        "code": "LIPO-PCDC", "name": "Lipolytic phosphatidylcholine / deoxycholate 10 mL",
        "indication": "fat_reduction", "route": "subcutaneous", "dosage_form": "solution for injection",
        "unit_label": "vial 10 mL", "unit_volume_ml": "10", "storage": "fridge",
        "bud_category": "category_2_aseptic_nonsterile_components",
        "components": [("Phosphatidylcholine", "5"), ("Sodium deoxycholate", "2.5"),
                       ("Sodium chloride 0.9 %", "2.5", "qs")],
        "instructions": (
            "1. Work in the ISO 5 laminar-flow hood; disinfect the work surface and every vial stopper "
            "with sterile 70 % isopropyl alcohol.\n"
            "2. Scan each component lot and check that it is released and in date.\n"
            "3. With a sterile syringe, draw 5 mL of phosphatidylcholine into a sterile empty 10 mL vial.\n"
            "4. Add 2.5 mL of sodium deoxycholate, then 2.5 mL of sodium chloride 0.9 %.\n"
            "5. Swirl gently for 30 seconds until clear and homogeneous; do not shake (it foams).\n"
            "6. Inspect against a light and a dark background: clear, pale yellow, no particles.\n"
            "7. Seal, label with the batch label and store at 2-8 °C until verified."),
    },
    {
        "code": "MESO-VCHA", "name": "Mesolift vitamin C + hyaluronic acid 5 mL",
        "indication": "skin_rejuvenation", "route": "intradermal", "dosage_form": "solution for injection",
        "unit_label": "vial 5 mL", "unit_volume_ml": "5", "storage": "fridge", "protect_from_light": True,
        "bud_category": "category_2_aseptic_sterile_components", "bud_hours": 48,
        "bud_reason": "ascorbic acid oxidises once diluted",
        "components": [("Ascorbic acid (vitamin C)", "1"), ("Hyaluronic acid", "2"), ("Lidocaine", "0.5"),
                       ("Sodium chloride 0.9 %", "1.5", "qs")],
        "instructions": (
            "1. Work in the ISO 5 laminar-flow hood; disinfect the work surface and every vial stopper "
            "with sterile 70 % isopropyl alcohol.\n"
            "2. Scan each component lot and check that it is released and in date.\n"
            "3. Draw 2 mL of hyaluronic acid slowly with a wide-bore needle into a sterile empty 5 mL vial.\n"
            "4. Add 1.5 mL of sodium chloride 0.9 % and 0.5 mL of lidocaine.\n"
            "5. Add 1 mL of ascorbic acid last, protected from light, to limit oxidation.\n"
            "6. Roll the vial gently for 1 minute until homogeneous; do not shake.\n"
            "7. Inspect: clear, colourless to faintly yellow, no particles. A brown tint means oxidised: "
            "discard.\n"
            "8. Seal, label, protect from light and store at 2-8 °C; use within 48 hours."),
    },
    {
        "code": "HAIR-MXBT", "name": "Hair mix minoxidil + biotin 5 mL",
        "indication": "hair_loss", "route": "intradermal", "dosage_form": "solution for injection",
        "unit_label": "vial 5 mL", "unit_volume_ml": "5", "storage": "room", "bud_category": "category_1",
        "components": [("Minoxidil", "2"), ("Biotin", "1"), ("Sodium chloride 0.9 %", "2", "qs")],
        "instructions": (
            "1. Work in the segregated compounding area; disinfect the work surface and every vial "
            "stopper with sterile 70 % isopropyl alcohol.\n"
            "2. Scan each component lot and check that it is released and in date.\n"
            "3. Draw 2 mL of minoxidil into a sterile empty 5 mL vial.\n"
            "4. Add 1 mL of biotin, then 2 mL of sodium chloride 0.9 %.\n"
            "5. Swirl gently until clear.\n"
            "6. Inspect: clear, no particles or crystals.\n"
            "7. Seal, label and keep at room temperature; use within 12 hours."),
    },
    {
        "code": "HA-LIDO", "name": "Hyaluronic acid + lidocaine 2 mL, sterility tested",
        "indication": "skin_rejuvenation", "route": "intradermal", "dosage_form": "solution for injection",
        "unit_label": "vial 2 mL", "unit_volume_ml": "2", "storage": "fridge",
        "bud_category": "category_2_aseptic_sterility_tested",
        "components": [("Hyaluronic acid", "1.5"), ("Lidocaine", "0.2"), ("Sodium chloride 0.9 %", "0.3", "qs")],
        "instructions": (
            "1. Work in the ISO 5 laminar-flow hood; disinfect the work surface and every vial stopper "
            "with sterile 70 % isopropyl alcohol.\n"
            "2. Scan each component lot and check that it is released and in date.\n"
            "3. Draw 1.5 mL of hyaluronic acid with a wide-bore needle into a sterile empty 2 mL vial.\n"
            "4. Add 0.2 mL of lidocaine, then sodium chloride 0.9 % to 2 mL.\n"
            "5. Roll gently until homogeneous; inspect: clear, no particles.\n"
            "6. Set aside the sterility sample units; the batch waits for the result before any use."),
    },
    {
        # Multiple-dose: a preserved vial punctured once, then drawn from for several patients while its
        # in-use period lasts (never beyond the batch's BUD). Every other demo formula is single-dose.
        "code": "MESO-HA-MD", "name": "Mesotherapy hyaluronic acid + lidocaine 10 mL, multiple-dose",
        "indication": "skin_rejuvenation", "route": "intradermal", "dosage_form": "solution for injection",
        "unit_label": "multiple-dose vial 10 mL", "unit_volume_ml": "10", "storage": "fridge",
        "bud_category": "category_2_aseptic_sterile_components",
        "dose": "multiple", "in_use_hours": 168,
        "antimicrobial_evidence": "USP <51> antimicrobial effectiveness test passed, report AET-2026-014 (demo)",
        "components": [("Hyaluronic acid", "4"), ("Lidocaine", "1"), ("Sodium chloride 0.9 %", "5", "qs")],
        "instructions": (
            "1. Work in the ISO 5 laminar-flow hood; disinfect the work surface and every vial stopper "
            "with sterile 70 % isopropyl alcohol.\n"
            "2. Scan each component lot and check that it is released and in date.\n"
            "3. Draw 4 mL of hyaluronic acid slowly with a wide-bore needle into a sterile empty 10 mL vial.\n"
            "4. Add 1 mL of lidocaine, then sodium chloride 0.9 % to 10 mL.\n"
            "5. Roll gently until homogeneous; inspect: clear, no particles.\n"
            "6. Seal, label and store at 2-8 °C. Once punctured, write the date and time on the label and "
            "use within 7 days (never beyond the BUD); disinfect the stopper before every draw."),
    },
]


def _seed_formulas() -> Iterator[str]:
    # One pharmacist writes, the other approves.
    pharmacist, approver = _user("pharmacist"), _user("pharmacist2")
    names = dict(db.session.execute(sa.select(Ingredient.name, Ingredient.id)).all())
    for spec in DEMO_FORMULAS:
        if db.session.scalar(sa.select(Formula.id).where(Formula.code == spec["code"])):
            continue
        data = {**spec, "components": [{"ingredient_id": names[name], "quantity": Decimal(quantity),
                                        "qs": "qs" in flags} for name, quantity, *flags in spec["components"]]}
        formula = formulas.create_formula(pharmacist, data)
        formulas.approve_formula(approver, formula.id, DEMO_PASSWORD)
        yield f"  formula {formula.label} {formula.name} (approved)"


# formula code, units, verified?
# A verified HA-LIDO batch waits for its sterility result (awaiting_tests). A single-dose vial serves
# one session: each batch has more units than the sessions below use it, so some vials stay sealed.
DEMO_BATCHES = [("LIPO-PCDC", 6, True), ("MESO-VCHA", 4, True), ("HAIR-MXBT", 3, True), ("LIPO-PCDC", 2, False),
                ("HA-LIDO", 10, True), ("MESO-HA-MD", 3, True)]

DEMO_PATIENTS = [
    ("CH-1001", "Maria Gomez", "1984-03-12", "+44 20 7946 0101", "maria.gomez@example.org"),
    ("CH-1002", "Aisha Rahman", "1990-07-30", "+44 20 7946 0102", "aisha.rahman@example.org"),
    ("CH-1003", "Laura Bianchi", "1978-11-02", "+44 20 7946 0103", ""),
    ("CH-1004", "Chen Wei", "1987-05-19", "", "chen.wei@example.org"),
    ("CH-1005", "Sophie Martin", "1995-01-25", "+44 20 7946 0105", "sophie.martin@example.org"),
    ("CH-1006", "James O'Neill", "1982-09-14", "+44 20 7946 0106", ""),
]

# chart number, [(formula code, volume mL, area)], indication
DEMO_SESSIONS = [
    ("CH-1001", [("LIPO-PCDC", "8", "abdomen")], "submental and abdominal fat"),
    ("CH-1002", [("LIPO-PCDC", "6", "flanks")], "flanks"),
    ("CH-1003", [("MESO-VCHA", "3", "face")], "skin rejuvenation, face"),
    ("CH-1004", [("HAIR-MXBT", "4", "scalp, vertex")], "androgenetic alopecia"),
    ("CH-1005", [("MESO-VCHA", "2.5", "neck"), ("LIPO-PCDC", "4", "submental")], "neck and jawline"),
    ("CH-1006", [("HAIR-MXBT", "3", "scalp, crown")], "hair loss"),
    ("CH-1001", [("MESO-VCHA", "2", "décolleté")], "skin quality"),
    # Three patients from one multiple-dose vial: the first use punctures it, it stays open for the next.
    ("CH-1002", [("MESO-HA-MD", "2", "face")], "skin rejuvenation, face"),
    ("CH-1003", [("MESO-HA-MD", "1.5", "neck")], "skin rejuvenation, neck"),
    ("CH-1006", [("MESO-HA-MD", "2", "décolleté")], "skin quality"),
]


def _compound_scanned(technician: User, formula: Formula, units: int) -> Batch:
    """As at the bench: the FEFO lots, each container scanned."""
    allocations = [{"lot_id": lot_id, "quantity": quantity} for component in batches.propose(formula, units)
                   for lot_id, quantity in component.proposed.items()]
    return batches.compound_batch(technician, formula.id, units, notes="demo batch", allocations=allocations,
                                  scanned_lot_ids=[row["lot_id"] for row in allocations], require_scan=True,
                                  equipment_ids=bench_equipment_ids(sites.main_site().id))


def _seed_batches() -> Iterator[str]:
    if db.session.scalar(sa.select(Batch.id).limit(1)):
        return
    technician, verifier = _user("technician"), _user("pharmacist2")
    for code, units, verified in DEMO_BATCHES:
        formula = db.session.scalar(sa.select(Formula).where(Formula.code == code,
                                                             Formula.status == FormulaStatus.APPROVED))
        batch = _compound_scanned(technician, formula, units)
        if verified:
            batches.verify_batch(verifier, batch.id, DEMO_PASSWORD)
        state = "awaiting verification" if not verified else batch.status.replace("_", " ")
        dose = (f"multiple-dose, in use {formula.in_use_hours} h after first puncture"
                if formula.dose == "multiple" else "single-dose")
        yield f"  batch {batch.code} {code} × {units} ({state}), vials {_vial_span(batch)} {dose}"


def _vial_span(batch: Batch) -> str:
    codes = db.session.scalars(sa.select(Vial.code).where(Vial.batch_id == batch.id).order_by(Vial.number)).all()
    return f"{codes[0]} to {codes[-1]}" if len(codes) > 1 else "".join(codes)


def _drawn_from(session_row: TreatmentSession) -> str:
    """The vials a session's uses were drawn from (by batch code: the open vial, else the next sealed one)."""
    found = db.session.execute(
        sa.select(Batch.code, Vial.code).select_from(SessionUse).join(Batch, Batch.id == SessionUse.batch_id)
        .outerjoin(Vial, Vial.id == SessionUse.vial_id).where(SessionUse.session_id == session_row.id)
        .order_by(SessionUse.id)).all()
    return ", ".join(vial or batch for batch, vial in found)


def _seed_patients_and_sessions() -> Iterator[str]:
    practitioner = _user("practitioner")
    for chart, name, birth, phone, email in DEMO_PATIENTS:
        if not db.session.scalar(sa.select(Patient.id).where(Patient.chart_number == chart)):
            treatments.create_patient(practitioner, {"chart_number": chart, "name": name, "birth_on": birth,
                                                     "phone": phone, "email": email})
            yield f"  patient {chart} {name}"
    if db.session.scalar(sa.select(sa.func.count()).select_from(TreatmentSession)):
        return
    released = {b.formula.code: b for b in db.session.scalars(
        sa.select(Batch).where(Batch.status == BatchStatus.RELEASED).options(sa.orm.selectinload(Batch.formula))
        .order_by(Batch.id))}
    patients = dict(db.session.execute(sa.select(Patient.chart_number, Patient.id)).all())
    recorded = []
    for chart, uses, indication in DEMO_SESSIONS:
        session_row = treatments.record_session(
            practitioner, patient_id=patients[chart], indication=indication,
            uses=[{"batch_code": released[code].code, "volume_ml": volume, "area": area}
                  for code, volume, area in uses])
        recorded.append(session_row)
        yield (f"  session {session_row.id} for {chart}: {', '.join(code for code, _, _ in uses)} "
               f"({_drawn_from(session_row)})")
    treatments.record_adverse_event(practitioner, session_id=recorded[0].id, type="swelling", severity="moderate",
                                    onset_on=clinic_today(), outcome="resolving with cold compresses")
    treatments.record_adverse_event(practitioner, session_id=recorded[1].id, type="bruising", severity="mild",
                                    onset_on=clinic_today(), outcome="resolved")
    yield "  2 adverse events after the lipolytic sessions (a quality signal to review)"


DEMO_RECALL_REASON = "Demo: crystals seen in the retained vial of the hair mix"


def _seed_recall() -> Iterator[str]:
    """An open recall on the hair-mix batch: one patient reached, one unreachable after two failed attempts."""
    if db.session.scalar(sa.select(Recall.id).where(Recall.reason == DEMO_RECALL_REASON)):
        return
    batch = db.session.scalar(sa.select(Batch).join(Formula, Formula.id == Batch.formula_id)
                              .where(Formula.code == "HAIR-MXBT",
                                     Batch.status.in_((BatchStatus.RELEASED, BatchStatus.DEPLETED)))
                              .order_by(Batch.id))
    if batch is None:
        return
    pharmacist, practitioner = _user("pharmacist"), _user("practitioner")
    recall = recalls.open_recall(pharmacist, batch_id=batch.id, reason=DEMO_RECALL_REASON, password=DEMO_PASSWORD)
    patients = dict(db.session.execute(sa.select(Patient.chart_number, Patient.id)).all())
    for method, note in (("phone", "no answer"), ("email", "no reply after 3 days")):
        recalls.record_contact(practitioner, recall.id, patients["CH-1004"], method, note, outcome="attempt_failed")
    recalls.record_contact(practitioner, recall.id, patients["CH-1004"], None, "two attempts, phone and e-mail",
                           outcome="unreachable")
    recalls.record_contact(practitioner, recall.id, patients["CH-1006"], "phone", "no symptoms; review booked")
    yield f"  recall {recall.id} on batch {batch.code}: CH-1006 reached, CH-1004 unreachable after 2 attempts"


def _seed_held_batch() -> Iterator[str]:
    """A batch on hold after a severe adverse event, to show holds and their release.

    Two units: the single-dose vial used is spent, the other (sealed) is held with its batch.
    """
    if db.session.scalar(sa.select(Hold.id).limit(1)):
        return
    technician, verifier, practitioner = _user("technician"), _user("pharmacist2"), _user("practitioner")
    formula = db.session.scalar(sa.select(Formula).where(Formula.code == "HAIR-MXBT",
                                                         Formula.status == FormulaStatus.APPROVED))
    batch = _compound_scanned(technician, formula, 2)
    batches.verify_batch(verifier, batch.id, DEMO_PASSWORD)
    patient_id = db.session.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1004"))
    session_row = treatments.record_session(practitioner, patient_id=patient_id, indication="hair loss",
                                            uses=[{"batch_code": batch.code, "volume_ml": "2", "area": "scalp"}])
    treatments.record_adverse_event(practitioner, session_id=session_row.id, type="infection", severity="severe",
                                    onset_on=clinic_today(), outcome="antibiotics started")
    yield (f"  batch {batch.code} HAIR-MXBT × 2 on hold after a severe infection (session {session_row.id}, "
           f"{_drawn_from(session_row)})")


def _seed_chain() -> Iterator[str]:
    """A second site, LYON, with a fridge and a practitioner, and vials on the road to it.

    Dr Omar Haddad (pharmacist2) works at both sites and has the site switcher; Dr Paula Reyes
    (pharmacist) works at MAIN and sees every site, as the auditor does. The transfer waits to be
    scanned in at LYON.
    """
    if db.session.scalar(sa.select(Site.id).where(Site.code == "LYON")):
        return
    lyon = sites.create_site(None, "LYON", "Lyon clinic", "Europe/Paris", "12 quai Saint-Antoine, 69002 Lyon")
    fridge = sites.create_location(None, lyon.id, "Fridge 1", "fridge", min_celsius="2", max_celsius="8")
    users.create_user(None, username="lyon", display_name="Dr Lucie Martin", role="practitioner",
                      password=DEMO_PASSWORD, allow_demo_password=True, site_codes=["LYON"])
    hub = _user("pharmacist2")
    sites.set_user_sites(None, hub.id, [sites.main_site().id, lyon.id], all_sites=False)
    # The chief pharmacist works at MAIN and sees the whole chain (its audit trail among the rest).
    sites.set_user_sites(None, _user("pharmacist").id, [sites.main_site().id], all_sites=True)
    batch = db.session.scalar(sa.select(Batch).join(Formula).where(
        Formula.code == "MESO-VCHA", Batch.status == "released").order_by(Batch.id))
    vials = db.session.scalars(sa.select(Vial).where(Vial.batch_id == batch.id, Vial.status == "sealed")
                               .order_by(Vial.number.desc()).limit(2)).all()
    transfer = transfers.create_transfer(hub, sites.main_site().id, lyon.id,
                                         [{"vial_code": vial.code} for vial in vials], to_location_id=fridge.id,
                                         note="Weekly delivery")
    transfers.dispatch(hub, transfer.id, scanned_codes=[vial.code for vial in vials])
    yield ("  user lyon          role practitioner  at site LYON (pharmacist2 works at MAIN and LYON; "
           "pharmacist sees every site)")
    yield (f"  site LYON, {fridge.code} {fridge.name}; transfer {transfer.code} of "
           f"{', '.join(vial.code for vial in vials)} dispatched, waiting to be received at LYON")


# Each fridge's log: read at 08:00 and 18:00 on its site's clock, in range, over these last days.
DEMO_READING_DAYS = 3
DEMO_READING_HOURS = (8, 18)
DEMO_READINGS_C = ("4.2", "5.1", "3.8", "4.6", "5.4", "4.0", "4.9", "3.6")


def _seed_cold_chain() -> Iterator[str]:
    """Fridge 1 at LYON and Fridge A at MAIN, each with a few days of twice-daily readings in range (no excursion),
    recorded by hand through the reading service by someone who works there."""
    main = sites.main_site()
    lyon = db.session.scalar(sa.select(Site).where(Site.code == "LYON"))
    fridge_a = db.session.scalar(sa.select(Location).where(Location.site_id == main.id, Location.name == "Fridge A"))
    if fridge_a is None:
        fridge_a = sites.create_location(None, main.id, "Fridge A", "fridge", min_celsius="2", max_celsius="8")
    lyon_fridge = db.session.scalar(sa.select(Location).where(Location.site_id == lyon.id, Location.name == "Fridge 1"))
    for location, site, reader in ((fridge_a, main, _user("technician")), (lyon_fridge, lyon, _user("lyon"))):
        if db.session.scalar(sa.select(TemperatureReading.id).where(TemperatureReading.location_id == location.id)
                             .limit(1)) is not None:
            continue
        moments = _reading_moments(site.timezone)
        for moment, celsius in zip(moments, DEMO_READINGS_C * 2, strict=False):
            cold_chain.record_reading(reader, location.id, measured_at=moment.isoformat(), celsius=celsius,
                                      source="manual", note="demo")
        yield (f"  {location.code} {location.name} at {site.code}: {len(moments)} readings in range "
               f"({location.min_celsius:g} to {location.max_celsius:g} °C, twice a day) by {reader.username}")


def _reading_moments(zone_name: str) -> list[datetime]:
    """08:00 and 18:00 on the site's clock over the last days, those already past."""
    zone, now = ZoneInfo(zone_name), utcnow()
    today = now.astimezone(zone).date()
    moments = [datetime.combine(today - timedelta(days=back), time(hour), tzinfo=zone)
               for back in range(DEMO_READING_DAYS, -1, -1) for hour in DEMO_READING_HOURS]
    return [moment for moment in moments if moment <= now][-DEMO_READING_DAYS * 2:]


def seed_demo(chain: bool = True) -> Iterator[str]:
    """Every part of the demo; `chain=False` leaves out the second site (a one-site clinic's data)."""
    yield "Demo users (change these passwords before real use):"
    yield from _seed_users()
    yield "Demo qualifications:"
    yield from _seed_qualifications()
    yield "Demo equipment:"
    yield from _seed_equipment()
    yield "Demo ingredients:"
    yield from _seed_ingredients()
    yield "Demo lots:"
    yield from _seed_lots()
    yield "Demo formulas:"
    yield from _seed_formulas()
    yield "Demo batches:"
    yield from _seed_batches()
    yield "Demo patients and sessions:"
    yield from _seed_patients_and_sessions()
    yield "Demo recall:"
    yield from _seed_recall()
    yield "Demo hold:"
    yield from _seed_held_batch()
    if chain:
        yield "Demo chain:"
        yield from _seed_chain()
        yield "Demo cold chain:"
        yield from _seed_cold_chain()
    yield "Demo data is in place."
