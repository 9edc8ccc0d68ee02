"""A recall's contact list and workbook are grouped by the site where each patient was treated."""

import io
import re
from decimal import Decimal

import sqlalchemy as sa
from openpyxl import load_workbook
from testkit import PASSWORD, sign_in_session

from compounding import workbooks
from compounding.extensions import db
from compounding.models import Location, SessionUse, Site, TreatmentSession
from compounding.queries.recalls import recall_record
from compounding.services import exposure, recalls, trace
from compounding.services.clock import utcnow


def _session_at_lyon(chain, patient, volume="2") -> Site:
    """A session performed at LYON with the first batch (written as the session service writes one), counted."""
    site = db.session.scalar(sa.select(Site).where(Site.code == "LYON"))
    if site is None:
        site = Site(code="LYON", name="Lyon", timezone="Europe/Paris", address="", active=True, created_at=utcnow())
        db.session.add(site)
        db.session.flush()
        db.session.add(Location(site_id=site.id, code="LOC0900", name="Lyon store", kind="room", is_default=True))
    row = TreatmentSession(patient_id=patient.id, practitioner_id=chain["practitioner"].id, site_id=site.id,
                           performed_at=utcnow(), recorded_at=utcnow())
    db.session.add(row)
    db.session.flush()
    db.session.add(SessionUse(session_id=row.id, batch_id=chain["first"].id, volume_ml=Decimal(volume)))
    db.session.flush()
    exposure.count_session(row)
    db.session.commit()
    return site


def _table(sheet) -> list[dict]:
    rows = list(sheet.iter_rows(values_only=True))
    return [dict(zip(rows[0], row, strict=False)) for row in rows[1:]]


def test_the_recall_scope_lists_patients_per_site_with_the_site_s_totals(chain, make_patient, pharmacist):
    lyon_patient = make_patient()
    _session_at_lyon(chain, lyon_patient)
    _session_at_lyon(chain, chain["a"], "1")  # a, treated at MAIN too, is listed under both
    recall = recalls.open_recall(pharmacist, reason="endotoxin", password=PASSWORD, lot_id=chain["lot"].id)
    scope = recalls.recall_scope(recall)
    assert [(p.site_code, p.chart_number) for p in scope.patients] == [
        ("LYON", chain["a"].chart_number), ("LYON", lyon_patient.chart_number),
        ("MAIN", chain["a"].chart_number), ("MAIN", chain["b"].chart_number), ("MAIN", chain["c"].chart_number)]
    sites = {s.site_code: s for s in scope.sites}
    assert (sites["LYON"].sessions, sites["LYON"].patients, sites["LYON"].volume_ml) == (2, 2, Decimal("3"))
    assert (sites["MAIN"].sessions, sites["MAIN"].patients) == (4, 3)
    assert scope.counts["patients"] == 4 and scope.patient_rows == 5


def test_the_recall_page_has_a_heading_per_site_and_the_workbook_a_sorted_site_column(
        client, chain, make_patient, make_user, pharmacist):
    lyon_patient = make_patient()
    _session_at_lyon(chain, lyon_patient)
    recall = recalls.open_recall(pharmacist, reason="endotoxin", password=PASSWORD, lot_id=chain["lot"].id)
    sign_in_session(client, make_user("pharmacist"))
    page = client.get(f"/recalls/{recall.id}").get_data(as_text=True)
    assert page.index('id="site-LYON"') < page.index(f'id="patient-{lyon_patient.id}"') < page.index('id="site-MAIN"')
    assert re.search(r'id="site-totals"', page)
    record = recall_record(recall.id, per_page=None)
    out = io.BytesIO()
    workbooks.recall_workbook(record.recall, record.scope, record.contacts, out)
    patients = _table(load_workbook(io.BytesIO(out.getvalue()))["Patients"])
    assert [row["Site"] for row in patients] == ["LYON", "MAIN", "MAIN", "MAIN"]
    out = io.BytesIO()
    workbooks.trace_workbook(trace.trace_lot(chain["lot"].id, per_page=None), out)
    book = load_workbook(io.BytesIO(out.getvalue()))
    assert [row["Site"] for row in _table(book["Patients"])] == ["LYON", "MAIN", "MAIN", "MAIN"]
    assert {row["Site"] for row in _table(book["Sessions"])} == {"LYON", "MAIN"}
