"""The people pages: the team's standings, a person's page with its result and void forms, the kinds, the
workbook, and the bench page's refusal of someone whose qualification lapsed."""

import io
import re
from datetime import date, timedelta

import openpyxl
import pytest
import sqlalchemy as sa
from peoplekit import due_in, lapse
from sitekit import add_site
from testkit import PASSWORD, QueryCounter, audit_rows, count_rows, sign_in, sign_in_session

from compounding.extensions import db
from compounding.models import Batch, Qualification, QualificationKind
from compounding.services import qualifications
from compounding.services.errors import InvalidState
from compounding.services.qualifications import add_months

TODAY = date.today()


def _record(actor, person, kind="media_fill", **values):
    values = {"passed_on": TODAY - timedelta(days=2), "result": "pass", **values}
    return qualifications.record_qualification(actor, user_id=person.id, kind=kind, **values)


def _team(client, query: str = "") -> str:
    """The rows of the team table (the header's menu names the viewer too)."""
    page = client.get(f"/people{query}").get_data(as_text=True)
    return page[page.index("<tbody>"):page.index("</tbody>")]


def _form(kind="media_fill", **values):
    return {"kind": kind, "passed_on": (TODAY - timedelta(days=1)).isoformat(), "result": "pass", "cfu": "",
            "valid_until": "", "assessor": "QA lead", "note": "", **values}


@pytest.fixture
def viewer(client, make_user):
    """A pharmacist at MAIN, signed in: reads and records qualifications."""
    user = make_user("pharmacist", display_name="Viewing Pharmacist")
    sign_in(client, user)
    return user


# --- the team ---------------------------------------------------------------------------------------------

def test_the_team_lists_who_compounds_or_verifies_with_a_badge_per_kind(client, viewer, make_user):
    qualified = make_user("technician", display_name="Tess Tech")
    newcomer = make_user("technician", display_name="Nina New", qualified=False)
    make_user("practitioner", display_name="Pat Practitioner")
    gone = make_user("pharmacist", display_name="Gone Pharmacist")
    gone.active = False
    db.session.commit()
    page = client.get("/people").get_data(as_text=True)
    assert "Tess Tech" in page and "Nina New" in page and "Viewing Pharmacist" in page
    assert "Pat Practitioner" not in page and "Gone Pharmacist" not in page
    assert "Media-fill test" in page and "Gloved fingertip and thumb sampling" in page
    row = page[page.index("Nina New"):page.index("</tr>", page.index("Nina New"))]
    assert row.count(">never</span>") == 3
    until = add_months(TODAY - timedelta(days=80), 6)
    row = page[page.index("Tess Tech"):page.index("</tr>", page.index("Tess Tech"))]
    assert row.count(f">valid until {until.isoformat()}</span>") == 3
    assert f'href="/people/{qualified.id}"' in page and f'href="/people/{newcomer.id}"' in page


def test_the_due_filter_keeps_people_due_lapsed_failed_initial_or_missing(client, viewer, make_user):
    steady = make_user("technician", display_name="Steady")
    soon = make_user("technician", display_name="Soon Due")
    late = make_user("technician", display_name="Lapsed One")
    failed = make_user("technician", display_name="Failed One")
    make_user("technician", display_name="Never Qualified", qualified=False)
    due_in(soon, 12)
    lapse(late, "hand_hygiene_garbing")
    _record(viewer, failed, "media_fill", result="fail", passed_on=TODAY)
    page = _team(client, "?due=1")
    for name in ("Soon Due", "Lapsed One", "Failed One", "Never Qualified"):
        assert name in page
    assert "Steady" not in page and "Viewing Pharmacist" not in page
    assert f"due · until {(TODAY + timedelta(days=12)).isoformat()}" in page and "lapsed " in page
    # One kind: its column only, and only those due in it.
    page = client.get("/people?due=1&kind=hand_hygiene_garbing").get_data(as_text=True)
    assert '<th scope="col">Media-fill test' not in page and '<th scope="col">Hand hygiene and garbing' in page
    page = _team(client, "?due=1&kind=hand_hygiene_garbing")
    assert "Lapsed One" in page and "Never Qualified" in page
    assert "Soon Due" not in page and "Failed One" not in page and "Steady" not in page
    assert f'href="/people/{steady.id}"' in _team(client)  # listed without the filter


def test_the_team_shows_only_people_at_the_viewers_sites(client, viewer, make_user):
    add_site("LYON")
    make_user("technician", display_name="Lyon Tech", site_codes=["LYON"])
    make_user("pharmacist", display_name="Chain Pharmacist", site_codes=["LYON"], all_sites=True)
    page = _team(client)
    assert "Lyon Tech" not in page and "Chain Pharmacist" in page
    sign_in_session(client, make_user("auditor"))
    page = _team(client)
    assert "Lyon Tech" in page and "Viewing Pharmacist" in page
    assert ">LYON</span>" in page  # several sites seen: each person's sites are named


def test_the_team_page_reads_the_same_statements_for_3_or_15_people(client, viewer, make_user):
    def statements(query: str) -> tuple[int, int]:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            response = client.get(f"/people{query}")
        assert response.status_code == 200
        return counter.count, len(re.findall(r'href="/people/\d+"', response.get_data(as_text=True)))

    for i in range(2):
        due_in(make_user("technician", display_name=f"First {i}"), 5)
    few = statements(""), statements("?due=1")
    for i in range(12):
        due_in(make_user("technician", display_name=f"More {i}"), 5)
    many = statements(""), statements("?due=1")
    assert [listed for _, listed in few] == [3, 2] and [listed for _, listed in many] == [15, 14]
    assert [count for count, _ in few] == [count for count, _ in many]


def test_only_readers_of_qualifications_open_the_team_page(client, make_user):
    for role, status in (("technician", 403), ("practitioner", 403), ("auditor", 200), ("admin", 200)):
        sign_in_session(client, make_user(role))
        assert client.get("/people").status_code == status, role
    page = client.get("/people").get_data(as_text=True)
    assert ">People</a>" in page and "My qualifications" in page


# --- a person's page --------------------------------------------------------------------------------------

def test_a_technician_opens_their_own_page_but_not_anothers(client, make_user):
    tech = make_user("technician", display_name="Tess Tech")
    other = make_user("technician")
    sign_in(client, tech)
    page = client.get(f"/people/{tech.id}").get_data(as_text=True)
    assert "Tess Tech" in page and "Media-fill test: valid until" in page
    assert "Record the result" not in page and "Void this record" not in page
    assert ">People</a>" not in page and 'href="/people/me">My qualifications' in page
    assert client.get(f"/people/{other.id}").status_code == 403
    assert client.get("/people/999999").status_code == 404


def test_a_person_at_another_site_is_not_found(client, viewer, make_user):
    add_site("LYON")
    stranger = make_user("technician", site_codes=["LYON"])
    assert client.get(f"/people/{stranger.id}").status_code == 404
    before = count_rows(Qualification)
    assert client.post(f"/people/{stranger.id}/qualifications", data=_form()).status_code == 404
    assert count_rows(Qualification) == before
    sign_in_session(client, make_user("admin"))  # admins manage every account
    assert client.get(f"/people/{stranger.id}").status_code == 200


def test_a_persons_page_reads_the_same_statements_for_few_or_many_records(client, viewer, make_user):
    person = make_user("technician")

    def statements() -> int:
        db.session.expire_all()
        with QueryCounter(db.engine) as counter:
            assert client.get(f"/people/{person.id}").status_code == 200
        return counter.count

    few = statements()
    for days in range(1, 21):  # past one page of the history
        _record(viewer, person, passed_on=TODAY - timedelta(days=days))
    assert statements() == few


def test_a_pharmacist_records_a_pass_and_the_page_says_what_it_changed(client, viewer, make_user):
    person = make_user("technician", display_name="Tess Tech", qualified=False)
    response = client.post(f"/people/{person.id}/qualifications", data=_form("hand_hygiene_garbing"))
    assert response.status_code == 302
    record = db.session.scalar(sa.select(Qualification).where(Qualification.user_id == person.id))
    passed = TODAY - timedelta(days=1)
    assert (record.result, record.passed_on, record.valid_until, record.assessor, record.recorded_by_id) == (
        "pass", passed, add_months(passed, 6), "QA lead", viewer.id)
    [row] = audit_rows("qualification.recorded", "qualification", record.id)
    assert row.actor_id == viewer.id
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Hand hygiene and garbing: pass on {passed.isoformat()} recorded for Tess Tech" in page
    assert f"valid until {add_months(passed, 6).isoformat()}" in page and "recorded by Viewing Pharmacist" in page


def test_gloved_fingertip_counts_cfu_and_shows_the_initial_series(client, viewer, make_user):
    person = make_user("technician", qualified=False)
    for days in (3, 2):
        assert client.post(f"/people/{person.id}/qualifications", data=_form(
            "gloved_fingertip", cfu="0", passed_on=(TODAY - timedelta(days=days)).isoformat())).status_code == 302
    page = client.get(f"/people/{person.id}").get_data(as_text=True)
    assert "initial 2 of 3" in page and "0 CFU" in page and 'data-cfu-kinds="gloved_fingertip"' in page


@pytest.mark.parametrize("values, message", [
    ({"passed_on": (TODAY + timedelta(days=1)).isoformat()}, "is in the future"),
    ({"valid_until": (TODAY - timedelta(days=5)).isoformat()}, "is not after the day it was passed"),
    ({"cfu": "2"}, "counts no colony-forming units"),
    ({"kind": "gloved_fingertip"}, "give the colony-forming units counted"),
    ({"kind": "gloved_fingertip", "cfu": "1"}, "1 CFU fails an initial qualification"),
    ({"result": "fail", "valid_until": (TODAY + timedelta(days=30)).isoformat()}, "valid for nothing"),
    ({"passed_on": "yesterday"}, "Not a valid date value"),
    ({"kind": "astrology"}, "Not a valid choice"),
    ({"cfu": "-1", "kind": "gloved_fingertip"}, "A whole number from 0 to 10000"),
])
def test_a_refused_result_shows_on_the_form_and_nothing_is_stored(client, viewer, make_user, values, message):
    person = make_user("technician", qualified=False)
    response = client.post(f"/people/{person.id}/qualifications", data=_form(**values))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    mine = sa.select(sa.func.count()).where(Qualification.user_id == person.id)
    assert db.session.scalar(mine) == 0 and audit_rows("qualification.recorded") == []


def test_only_pharmacists_and_admins_record(client, make_user):
    person = make_user("technician", qualified=False)
    for role in ("technician", "auditor"):
        sign_in_session(client, make_user(role))
        assert client.post(f"/people/{person.id}/qualifications", data=_form()).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).where(Qualification.user_id == person.id)) == 0


def test_voiding_strikes_the_record_through_with_who_and_why(client, viewer, make_user):
    person = make_user("technician", qualified=False)
    record = _record(viewer, person, result="fail", passed_on=TODAY)
    refused = client.post(f"/people/qualifications/{record.id}/void", data={f"void{record.id}-reason": ""})
    assert refused.status_code == 422 and "This field is required" in refused.get_data(as_text=True)
    assert db.session.get(Qualification, record.id).voided_at is None
    response = client.post(f"/people/qualifications/{record.id}/void",
                           data={f"void{record.id}-reason": "Entered for the wrong person"})
    assert response.status_code == 302
    page = client.get(f"/people/{person.id}").get_data(as_text=True)
    card = page[page.index(f'id="record-{record.id}"'):]
    assert "text-decoration-line-through" in card[:300]
    assert "by Viewing Pharmacist" in card and "Entered for the wrong person" in card
    assert "Void this record" not in page  # nothing left to void
    [row] = audit_rows("qualification.voided", "qualification", record.id)
    assert row.reason == "Entered for the wrong person"
    again = client.post(f"/people/qualifications/{record.id}/void", data={f"void{record.id}-reason": "again"})
    assert again.status_code == 422 and "already voided" in again.get_data(as_text=True)


def test_each_record_shows_its_evidence_and_the_page_costs_the_same_with_more(client, viewer, make_user):
    from documentkit import pdf

    from compounding.services import documents

    recorder = make_user("pharmacist")

    def person_with(records: int):
        person = make_user("technician", qualified=False)
        for n in range(records):
            record = qualifications.record_qualification(
                recorder, user_id=person.id, kind="media_fill", passed_on=date.today() - timedelta(days=n),
                result="pass")
            documents.attach(recorder, "qualification", record.id, data=pdf(f"plate {n}"),
                             filename=f"plate-{person.id}-{n}.pdf", kind="evidence")
        return person

    costs = []
    for person in (person_with(1), person_with(5)):
        with QueryCounter(db.engine) as counter:
            page = client.get(f"/people/{person.id}").get_data(as_text=True)
        costs.append(counter.count)
        ids = db.session.scalars(sa.select(Qualification.id).where(Qualification.user_id == person.id))
        assert all(f'id="documents-qualification-{i}"' in page for i in ids)
        assert f"plate-{person.id}-0.pdf" in page
    assert costs[0] == costs[1]


# --- kinds -------------------------------------------------------------------------------------------------

def _kind_form(**values):
    return {"code": "aseptic_technique", "name": "Aseptic technique", "valid_months": "12",
            "category3_months": "6", "initial_passes": "1", "required": "y", **values}


def test_an_admin_adds_and_edits_a_kind_and_the_team_gets_its_column(client, make_user):
    sign_in(client, make_user("admin"))
    assert client.post("/people/kinds/new", data=_kind_form()).status_code == 302
    kind = db.session.scalar(sa.select(QualificationKind).where(QualificationKind.code == "aseptic_technique"))
    assert (kind.valid_months, kind.category3_months, kind.required, kind.builtin) == (12, 6, True, False)
    assert '<th scope="col">Aseptic technique' in client.get("/people").get_data(as_text=True)
    response = client.post(f"/people/kinds/{kind.id}/edit", data={
        "name": "Aseptic technique (observed)", "valid_months": "12", "category3_months": "6",
        "initial_passes": "1"})  # unticked: neither required nor active
    assert response.status_code == 302
    db.session.refresh(kind)
    assert (kind.name, kind.required, kind.active) == ("Aseptic technique (observed)", False, False)
    assert '<th scope="col">Aseptic' not in client.get("/people").get_data(as_text=True)
    assert audit_rows("qualification_kind.updated", "qualification_kind", kind.id)


def test_a_builtin_kind_keeps_its_series_and_a_bad_kind_is_refused_on_the_form(client, make_user):
    admin = make_user("admin")
    sign_in(client, admin)
    gloved = qualifications.get_kind("gloved_fingertip")
    page = client.get(f"/people/kinds/{gloved.id}/edit").get_data(as_text=True)
    assert 'name="initial_passes"' not in page and 'name="counts_cfu"' not in page
    response = client.post(f"/people/kinds/{gloved.id}/edit", data={
        "name": gloved.name, "valid_months": "6", "category3_months": "2", "initial_passes": "1",
        "required": "y", "active": "y"})  # a series and an unticked CFU count posted anyway are not read
    assert response.status_code == 302
    db.session.refresh(gloved)
    assert (gloved.initial_passes, gloved.counts_cfu, gloved.category3_months) == (3, True, 2)
    with pytest.raises(InvalidState, match="defined by USP <797>"):
        qualifications.update_kind(admin, gloved.id, name=gloved.name, valid_months=6, category3_months=3,
                                   initial_passes=1, counts_cfu=True, required=True, active=True)
    before = count_rows(QualificationKind)
    for values, message in (({"code": "Bad code!"}, "lower-case letters"),
                            ({"code": "media_fill"}, "exists already"),
                            ({"category3_months": "9", "valid_months": "6"}, "not longer than the usual one"),
                            ({"valid_months": "61"}, "A whole number from 1 to 60")):
        response = client.post("/people/kinds/new", data=_kind_form(**values))
        assert response.status_code == 422 and message in response.get_data(as_text=True), values
    assert count_rows(QualificationKind) == before


def test_only_admins_manage_kinds(client, make_user):
    sign_in(client, make_user("pharmacist"))
    assert client.get("/people/kinds").status_code == 403
    assert client.post("/people/kinds/new", data=_kind_form()).status_code == 403
    sign_in_session(client, make_user("admin"))
    page = client.get("/people/kinds").get_data(as_text=True)
    assert "Media-fill test" in page and "USP &lt;797&gt;" in page


# --- the workbook ------------------------------------------------------------------------------------------

def test_the_workbook_has_each_standing_and_every_record_with_voided_ones_marked(client, viewer, make_user):
    person = make_user("technician", display_name="Tess Tech")
    wrong = _record(viewer, person, "media_fill", result="fail", passed_on=TODAY)
    qualifications.void_qualification(viewer, wrong.id, "Wrong person")
    response = client.get("/people/qualifications.xlsx")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert book.sheetnames == ["Summary", "Standings", "Records"]
    standings = list(book["Standings"].iter_rows(values_only=True))
    assert len(standings) == 1 + 2 * 3  # the viewer and Tess, three kinds each
    records = list(book["Records"].iter_rows(values_only=True))
    header = records[0]
    assert header[:7] == ("Person", "Username", "Qualification", "Date", "Result", "CFU", "Valid until")
    tess = [dict(zip(header, row, strict=True)) for row in records[1:] if row[0] == "Tess Tech"]
    assert len(tess) == 1 + 3 + 1 + 1  # hand hygiene, gloved fingertip's series, media fill, and the voided fail
    voided = [row for row in tess if row["Voided"] == "yes"]
    assert [(row["Result"], row["Why voided"], row["Voided by"]) for row in voided] == [
        ("fail", "Wrong person", "Viewing Pharmacist")]
    assert {row["CFU"] for row in tess if row["Qualification"].startswith("Gloved")} == {0}


def test_the_workbook_follows_the_pages_filters(client, viewer, make_user):
    due_in(make_user("technician", display_name="Soon Due"), 10)
    make_user("technician", display_name="Steady")
    book = openpyxl.load_workbook(io.BytesIO(client.get("/people/qualifications.xlsx?due=1&kind=media_fill").data))
    rows = list(book["Standings"].iter_rows(values_only=True))[1:]
    assert [(row[0], row[3], row[4]) for row in rows] == [("Soon Due", "Media-fill test", "due soon")]
    assert {row[0] for row in list(book["Records"].iter_rows(values_only=True))[1:]} == {"Soon Due"}


# --- the bench ---------------------------------------------------------------------------------------------

@pytest.fixture
def bench(make_ingredient, make_lot, make_formula):
    active = make_ingredient(name="Phosphatidylcholine")
    saline = make_ingredient(name="Saline", kind="diluent")
    formula = make_formula([(active, "2"), (saline, "8")])
    return formula, make_lot(active, quantity="100"), make_lot(saline, quantity="500")


def test_a_lapsed_technician_is_refused_at_the_bench_naming_the_qualification(client, make_user, bench):
    formula, active_lot, saline_lot = bench
    tech = make_user("technician")
    until = lapse(tech)
    sign_in(client, tech)
    data = {"formula_id": str(formula.id), "units": "1",
            f"lot-{active_lot.id}-quantity": "2", f"lot-{active_lot.id}-scan": active_lot.code,
            f"lot-{saline_lot.id}-quantity": "8", f"lot-{saline_lot.id}-scan": saline_lot.code}
    response = client.post("/batches/new", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f"may not compound: Media-fill test: lapsed on {until.isoformat()}" in page
    assert 'href="/people/me">See your qualifications</a>' in page
    assert client.get("/people/me").headers["Location"] == f"/people/{tech.id}"
    assert count_rows(Batch) == 0


def test_a_lapsed_pharmacist_is_refused_on_the_verify_form(client, make_user, make_batch):
    batch = make_batch(release=False)
    verifier = make_user("pharmacist")
    lapse(verifier, "gloved_fingertip")
    sign_in(client, verifier)
    response = client.post(f"/batches/{batch.id}/verify", data={"verify-password": PASSWORD})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "may not verify: Gloved fingertip and thumb sampling: lapsed on" in page
    assert 'href="/people/me">See your qualifications' in page
    assert db.session.get(Batch, batch.id).status == "prepared"
