"""The dashboard's bench panels: whose qualifications are due, the viewer's own, and equipment due, in a fixed
number of statements whatever the size of the team or of the equipment register."""

import re
from datetime import timedelta

import pytest
from sitekit import add_site
from testkit import QueryCounter, qualify, sign_in, sign_in_session

from compounding.extensions import db
from compounding.services import dashboard, equipment, qualifications, sites
from compounding.services.clock import clinic_today


def panel(page: str, panel_id: str) -> str:
    """The HTML of one dashboard card (empty when it is not shown)."""
    found = re.search(rf'id="{panel_id}".*?</ul>', page, re.S)
    return found.group(0) if found else ""


def shown(html: str) -> str:
    """The text a reader sees: tags dropped, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" :", ":")


def technician_due(make_user, name: str, days_ago: int = 170):
    """A technician whose every required qualification was passed `days_ago` days ago (170: due within 30 days)."""
    person = make_user("technician", display_name=name, qualified=False)
    qualify(person, passed_days_ago=days_ago)
    return person


def test_the_team_s_qualifications_due_are_listed_red_before_amber_with_what_each_one_says(pharmacist, make_user):
    today = clinic_today()
    soon = technician_due(make_user, "Dana Soon")
    lapsed = technician_due(make_user, "Lee Lapsed", days_ago=200)
    failed = make_user("technician", display_name="Fay Failed")
    qualifications.record_qualification(pharmacist, user_id=failed.id, kind="media_fill", passed_on=today,
                                        result="fail")
    never = make_user("pharmacist", display_name="Nat New", qualified=False)
    make_user("practitioner", display_name="Pat Practitioner")  # needs no qualification to treat
    technician_due(make_user, "Ray Retired").active = False
    db.session.commit()

    due, total = dashboard.qualifications_due(site_ids=None)
    by_person = {}
    for row in due:
        by_person.setdefault(row.name, []).append(row)
    assert set(by_person) == {"Dana Soon", "Lee Lapsed", "Fay Failed", "Nat New"} and total == len(due) == 10
    assert [row.tone for row in due] == ["danger"] * 7 + ["warning"] * 3
    assert {row.label for row in by_person["Dana Soon"]} == {"due soon"}
    assert {row.label for row in by_person["Lee Lapsed"]} == {"lapsed"}
    assert {row.label for row in by_person["Nat New"]} == {"never recorded"}
    [fail] = by_person["Fay Failed"]
    assert fail.standing.kind_code == "media_fill" and fail.day == today
    assert fail.state_text == f"failed on {today.isoformat()} (suspended until a new pass)"
    media = next(row for row in by_person["Dana Soon"] if row.standing.kind_code == "media_fill")
    assert media.state_text == f"due, valid until {media.standing.valid_until.isoformat()}"
    assert media.user_id == soon.id and by_person["Lee Lapsed"][0].user_id == lapsed.id
    assert by_person["Nat New"][0].user_id == never.id
    shown, total = dashboard.qualifications_due(site_ids=None, limit=2)
    assert len(shown) == 2 and total == 10


def test_a_pharmacist_sees_only_the_people_of_their_sites(client, make_user):
    lyon = add_site("LYON")
    here = make_user("pharmacist", display_name="Main Pharmacist")
    technician_due(make_user, "Dana Main")
    far = make_user("technician", display_name="Lou Lyon", site_codes=["LYON"], qualified=False)
    qualify(far, passed_days_ago=170)
    chain_wide = make_user("pharmacist", display_name="Cara Chain", all_sites=True, qualified=False)
    main = {row.name for row in dashboard.qualifications_due(site_ids=frozenset({sites.main_site().id}))[0]}
    assert main == {"Dana Main", "Cara Chain"}  # a chain-wide account works at every site
    assert {row.name for row in dashboard.qualifications_due(site_ids=frozenset({lyon.id}))[0]} == {
        "Lou Lyon", "Cara Chain"}
    assert chain_wide.all_sites
    sign_in(client, here)
    page = client.get("/").get_data(as_text=True)
    due = panel(page, "qualifications-due")
    assert "Qualifications due (6)" in due and "Dana Main" in due and "Lou Lyon" not in due
    assert "list-group-item-warning" in due and "list-group-item-danger" in due  # Cara: never recorded


def test_a_person_s_name_and_a_piece_of_equipment_link_to_their_pages(app, client, pharmacist, make_user):
    person = technician_due(make_user, "Dana Soon")
    tool = equipment.create_equipment(pharmacist, code="BAL-01", kind="balance", due_on=clinic_today())
    sign_in(client, pharmacist)
    page = client.get("/").get_data(as_text=True)
    assert f'href="/people/{person.id}"' in panel(page, "qualifications-due")
    assert f'href="/equipment/{tool.id}"' in panel(page, "equipment-due")


def test_a_technician_sees_their_own_qualification_due_and_not_the_team_s(client, make_user):
    person = make_user("technician", qualified=False)
    qualify(person, kinds=["hand_hygiene_garbing", "gloved_fingertip"])
    qualify(person, passed_days_ago=170, kinds=["media_fill"])
    technician_due(make_user, "Dana Soon")
    sign_in(client, person)
    page = client.get("/").get_data(as_text=True)
    own = panel(page, "own-qualifications")
    until = qualifications.standings(person.id)[2].valid_until
    assert f"Media-fill test: due, valid until {until.isoformat()}" in shown(own)
    assert "Gloved fingertip" not in own and "list-group-item-warning" in own
    assert "Qualifications due" not in page and "Dana Soon" not in page


def test_a_lapsed_qualification_of_one_s_own_is_red_and_says_the_bench_is_closed(client, make_user):
    person = technician_due(make_user, "Lee Lapsed", days_ago=200)
    sign_in(client, person)
    page = client.get("/").get_data(as_text=True)
    assert "list-group-item-danger" in panel(page, "own-qualifications")
    assert "You may not compound or verify until a valid pass is recorded." in page


def test_nothing_due_shows_no_panel_and_a_practitioner_sees_none(client, make_user, technician):
    sign_in(client, technician)  # qualified 80 days ago: valid for months
    page = client.get("/").get_data(as_text=True)
    assert 'id="own-qualifications"' not in page and 'id="equipment-due"' not in page
    technician_due(make_user, "Dana Soon")
    equipment.create_equipment(make_user("pharmacist"), code="BAL-01", kind="balance", due_on=clinic_today())
    sign_in_session(client, make_user("practitioner"))
    page = client.get("/").get_data(as_text=True)
    assert 'id="qualifications-due"' not in page and 'id="equipment-due"' not in page


def test_equipment_due_lists_out_of_service_and_overdue_first_then_what_is_due_within_30_days(
        client, pharmacist, make_user):
    today = clinic_today()

    def register(code, due_in):
        return equipment.create_equipment(pharmacist, code=code, kind="balance", due_on=today + timedelta(days=due_in))

    register("BAL-SOON", 10)
    register("BAL-LATER", 45)  # not due within 30 days
    register("BAL-TODAY", 0)  # still usable today
    register("BAL-LATE", -2)
    broken = register("BAL-BROKEN", 200)
    equipment.record_calibration(pharmacist, broken.id, performed_on=today, result="fail")
    retired = register("BAL-RETIRED", -5)
    equipment.update_equipment(pharmacist, retired.id, name="Old balance", active=False)
    lyon = add_site("LYON")
    equipment.create_equipment(make_user("pharmacist", site_codes=["LYON"]), code="BAL-LYON", kind="balance",
                               due_on=today)

    rows = dashboard.equipment_due(site_ids=frozenset({sites.main_site().id}))
    assert [(row.code, row.stops) for row in rows] == [
        ("BAL-LATE", True), ("BAL-BROKEN", True), ("BAL-TODAY", False), ("BAL-SOON", False)]
    assert rows[0].total == 4 and rows[0].site_code == "MAIN"
    assert [row.code for row in dashboard.equipment_due(site_ids=frozenset({lyon.id}))] == ["BAL-LYON"]
    assert len(dashboard.equipment_due(site_ids=None)) == 5
    assert len(dashboard.equipment_due(site_ids=None, limit=2)) == 2

    sign_in(client, make_user("technician"))
    due = panel(client.get("/").get_data(as_text=True), "equipment-due")
    assert "Equipment due (4)" in due and "BAL-LYON" not in due and "BAL-LATER" not in due
    assert f"overdue: calibration was due {(today - timedelta(days=2)).isoformat()}" in due
    assert "out of service: failed its last calibration" in due
    assert f"calibration due {(today + timedelta(days=10)).isoformat()}" in due
    assert due.count("list-group-item-danger") == 2 and due.count("list-group-item-warning") == 2
    assert 'title="Site"' not in due  # one site in view: no site badge


@pytest.mark.parametrize("role", ["pharmacist", "technician"])
def test_the_bench_panels_cost_the_same_statements_for_3_or_30_people_and_pieces(client, make_user, role):
    viewer = make_user(role, qualified=False)
    qualify(viewer, passed_days_ago=170)
    manager = make_user("pharmacist", username="equipment-manager")
    today = clinic_today()
    made = {"people": 0, "equipment": 0}

    def grow(count):
        for _ in range(count):
            made["people"] += 1
            technician_due(make_user, f"Person {made['people']:02d}", days_ago=170 if made["people"] % 2 else 200)
            made["equipment"] += 1
            equipment.create_equipment(manager, code=f"BAL-{made['equipment']:02d}", kind="balance",
                                       due_on=today + timedelta(days=made["equipment"] % 20 - 5))

    grow(3)
    sign_in(client, viewer)
    client.get("/")  # the first request's one-off statements
    with QueryCounter(db.engine) as small:
        page = client.get("/").get_data(as_text=True)
    assert 'id="equipment-due"' in page and 'id="own-qualifications"' in page
    grow(27)
    with QueryCounter(db.engine) as large:
        page = client.get("/").get_data(as_text=True)
    assert "Equipment due (30)" in page
    if role == "pharmacist":
        assert "Qualifications due (" in page and "more not shown" in page
    assert small.count == large.count, "\n".join(s[:150].replace("\n", " ") for s in large.statements)


def test_the_demo_technician_is_due_and_the_pharmacist_sees_it_with_the_overdue_balance(client):
    import io

    from openpyxl import load_workbook

    from compounding import workbooks
    from compounding.demo import DEMO_PASSWORD, seed_demo
    from compounding.models import User

    for _ in seed_demo():
        pass
    users = {u.username: u for u in db.session.scalars(db.select(User))}
    sign_in(client, users["technician"], DEMO_PASSWORD)
    page = client.get("/").get_data(as_text=True)
    assert "Media-fill test: due, valid until" in shown(panel(page, "own-qualifications"))
    sign_in_session(client, users["pharmacist"])
    page = client.get("/").get_data(as_text=True)
    assert users["technician"].display_name in panel(page, "qualifications-due")
    assert "BAL-02" in panel(page, "equipment-due") and "PIP-01" in panel(page, "equipment-due")
    # The demo's audit workbook carries the same evidence.
    out = io.BytesIO()
    today = clinic_today()
    summary = workbooks.audit_workbook(out, today - timedelta(days=400), today, generated_by="Auditor",
                                       clinic_name="Demo")
    counts = dict(summary.parts)
    assert counts["Qualifications"] >= 15 and counts["Equipment"] == 5 and counts["Calibrations"] == 5
    assert counts["Documents"] >= 1
    lots = load_workbook(io.BytesIO(out.getvalue()), read_only=True)["Lots"]
    rows = list(lots.iter_rows(values_only=True))
    reason = rows[0].index("Released without CoA: reason")
    assert any(row[reason] and "B. Braun" in row[reason] for row in rows[1:])
