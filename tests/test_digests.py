"""The daily digest of a site: what it says, who gets it, once a day, and where it is read without mail."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from mailkit import SmtpServer
from peoplekit import lapse
from sitekit import add_fridge, add_site
from testkit import PASSWORD, QueryCounter, audit_rows, count_rows, sign_in

from compounding.extensions import db
from compounding.models import Location, MailMessage, UserSite
from compounding.services import cold_chain, digests, equipment, recalls, sites
from compounding.services.clock import utcnow


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mail_on(app, smtp):
    """Mail configured to the local server: prepare_due writes the outbox."""
    app.config.update(smtp.settings())
    return smtp


def site_today(site) -> date:
    return utcnow().astimezone(ZoneInfo(site.timezone)).date()


def at_local(site, day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour, 30), tzinfo=ZoneInfo(site.timezone)).astimezone(UTC)


@pytest.fixture
def scene(chain, make_lot, make_batch, fridge, pharmacist, make_user):
    """MAIN with one thing of each section to act on, and a second site with a lot of its own expiring."""
    main = sites.main_site()
    today = site_today(main)
    expiring = make_lot(expires_on=today + timedelta(days=10), quantity="40")
    make_lot(expires_on=today + timedelta(days=300))  # far off: not in the digest
    stale = make_batch(units=2)
    stale.beyond_use_at = utcnow() - timedelta(hours=2)
    cold_chain.record_reading(pharmacist, fridge.id, measured_at=utcnow() - timedelta(minutes=10), celsius="12.5")
    quiet = add_fridge(main.id, "FRIDGE2")
    quiet.created_at = utcnow() - timedelta(days=3)
    lapsed = make_user("pharmacist", display_name="Lapsed Larry")
    lapse(lapsed)
    equipment.create_equipment(None, code="BAL-01", kind="balance", due_on=today + timedelta(days=5))
    recall = recalls.open_recall(pharmacist, batch_id=chain["first"].id, reason="Particles seen", password=PASSWORD)
    lyon = add_site("LYON")
    far_lot = make_lot(expires_on=today + timedelta(days=3))
    far_lot.location_id = sites.default_location(lyon.id).id
    far_lot.site_id = lyon.id
    db.session.commit()
    return {"main": main, "lyon": lyon, "expiring": expiring, "stale": stale, "quiet": quiet, "lapsed": lapsed,
            "recall": recall, "far_lot": far_lot, "fridge": fridge}


def test_the_digest_names_what_needs_the_site_today_in_each_section(scene):
    digest = digests.build(scene["main"])
    assert [row.code for row in digest.lots.rows] == [scene["expiring"].code]
    assert digest.lots.rows[0].remaining == 40
    assert scene["stale"].code in [row.code for row in digest.batches.rows]
    stale_row = next(row for row in digest.batches.rows if row.code == scene["stale"].code)
    assert stale_row.vials == 2 and stale_row.remaining_volume_ml > 0
    assert [row.location_id for row in digest.excursions.rows] == [scene["fridge"].id]
    assert [missed.location.code for missed in digest.missed_readings.rows] == ["FRIDGE2"]
    assert "Lapsed Larry" in [due.name for due in digest.qualifications.rows]
    assert [row.code for row in digest.equipment.rows] == ["BAL-01"]
    # Patients a, b of the first batch (sessions at MAIN), none contacted yet.
    assert [(row.id, row.not_reached) for row in digest.recalls.rows] == [(scene["recall"].id, 2)]
    assert not digest.empty and "1 lot expiring, 1 batch past its BUD" in digest.subject


def test_a_patient_reached_leaves_the_recall_count_and_another_site_s_lot_stays_out(scene, chain, pharmacist):
    recalls.record_contact(pharmacist, scene["recall"].id, chain["a"].id, outcome="reached", method="phone")
    digest = digests.build(scene["main"])
    assert [row.not_reached for row in digest.recalls.rows] == [1]
    assert scene["far_lot"].code not in [row.code for row in digest.lots.rows]
    assert [row.code for row in digests.build(scene["lyon"]).lots.rows] == [scene["far_lot"].code]


def test_the_digest_is_built_in_a_fixed_number_of_statements(scene, make_lot, make_user):
    main = scene["main"]
    digests.build(main)
    with QueryCounter(db.engine) as small:
        digests.build(main)
    for n in range(4):
        make_lot(expires_on=site_today(main) + timedelta(days=n + 1))
        lapse(make_user("technician", display_name=f"Late Tech {n}"))
    db.session.refresh(main)  # the commits above expired it: its reload is not the digest's
    with QueryCounter(db.engine) as large:
        digest = digests.build(main)
    assert digest.lots.total == 5
    assert small.count == large.count <= 14, "\n".join(s[:120] for s in large.statements)


def _pharmacist_with_address(make_user, name="Dr Mail", email="dr.mail@Clinic.Example", **kw):
    return make_user("pharmacist", display_name=name, email=email, **kw)


def test_one_digest_per_site_and_day_however_often_it_runs(mail_on, scene, make_user):
    reader = _pharmacist_with_address(make_user)
    now = at_local(scene["main"], site_today(scene["main"]), 7)
    first = digests.prepare_due(now)
    again = digests.prepare_due(now + timedelta(minutes=15))
    rows = db.session.scalars(sa.select(MailMessage)).all()
    assert [(row.to_address, row.site_id) for row in rows] == [("dr.mail@clinic.example", scene["main"].id)]
    assert [item.site_code for item in first] == ["MAIN"] and again == []
    assert rows[0].subject.startswith(f"Digest MAIN {site_today(scene['main'])}")
    assert scene["expiring"].code in rows[0].body_text and scene["expiring"].code in rows[0].body_html
    assert "http://127.0.0.1:5000/lots/" in rows[0].body_text
    assert len(audit_rows("digest.prepared")) == 1
    assert reader.id == rows[0].recipient_id


def test_only_the_site_s_active_pharmacists_with_an_address_get_it(mail_on, app, make_user):
    main = sites.main_site()
    lyon = add_site("LYON")
    here = _pharmacist_with_address(make_user, "Here", "here@clinic.example")
    _pharmacist_with_address(make_user, "No address", None)
    make_user("technician", email="tech@clinic.example")
    _pharmacist_with_address(make_user, "Lyon only", "lyon@clinic.example", site_codes=["LYON"])
    gone = _pharmacist_with_address(make_user, "Gone", "gone@clinic.example")
    gone.active = False
    db.session.commit()
    app.config["DIGEST_HOUR"] = 0
    digests.prepare_due()
    sent_to = dict(db.session.execute(sa.select(MailMessage.to_address, MailMessage.site_id)).all())
    assert sent_to == {"here@clinic.example": main.id, "lyon@clinic.example": lyon.id}
    assert db.session.scalar(sa.select(UserSite.site_id).where(UserSite.user_id == here.id)) == main.id


def test_nothing_is_prepared_before_the_site_s_digest_hour(mail_on, app, make_user):
    _pharmacist_with_address(make_user)
    main = sites.main_site()
    day = site_today(main)
    app.config["DIGEST_HOUR"] = 6
    assert digests.prepare_due(at_local(main, day, 5)) == []
    assert [item.day for item in digests.prepare_due(at_local(main, day, 6))] == [day]


def test_a_quiet_day_still_sends_a_short_digest(mail_on, make_user):
    _pharmacist_with_address(make_user)
    digests.prepare_due(ignore_hour=True)
    message = db.session.scalar(sa.select(MailMessage))
    assert "nothing needs you today" in message.subject
    assert "Nothing needs you today" in message.body_text and "Nothing needs you today" in message.body_html


def test_without_a_mail_server_the_digest_is_read_on_its_page_only(app, client, scene, make_user):
    assert not app.config["MAIL_SERVER"]
    reader = _pharmacist_with_address(make_user)
    assert digests.prepare_due(ignore_hour=True) == []
    assert count_rows(MailMessage) == 0
    sign_in(client, reader)
    page = client.get("/digest").get_data(as_text=True)
    assert scene["expiring"].code in page and 'id="digest-recalls"' in page and "no mail server is set" in page
    assert ' style="' not in page.split('id="digest-summary"')[1]  # the page keeps to the CSP: classes only
    dashboard = client.get("/").get_data(as_text=True)
    assert 'id="digest-panel"' in dashboard and "1 lot expiring" in dashboard


def test_the_digest_page_and_panel_cost_the_same_statements_whatever_the_data(client, scene, make_lot, make_user):
    reader = make_user("pharmacist")
    sign_in(client, reader)
    client.get("/digest")
    db.session.expire_all()  # as after any commit: each request then loads what it reads
    with QueryCounter(db.engine) as small:
        assert client.get("/digest").status_code == 200
    for n in range(5):
        make_lot(expires_on=site_today(scene["main"]) + timedelta(days=n + 1))
        add_fridge(scene["main"].id, f"FR{n}")
    db.session.execute(sa.update(Location).values(created_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    with QueryCounter(db.engine) as large:
        page = client.get("/digest").get_data(as_text=True)
    assert "Lots expiring (6)" in page
    assert small.count == large.count, "\n".join(s[:120] for s in large.statements) + "\n----\n" + "\n".join(
        s[:120] for s in small.statements)


def test_a_technician_has_no_digest_page(client, make_user):
    sign_in(client, make_user("technician"))
    assert client.get("/digest").status_code == 403
