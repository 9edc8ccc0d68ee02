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


# --- totals, expiry and the panel agree with the rest of the application ----------------------------------------


def test_each_section_s_total_counts_every_row_not_only_those_shown(app, pharmacist, monkeypatch):
    main = sites.main_site()
    for code in ("FR-A", "FR-B", "FR-C"):
        place = add_fridge(main.id, code)
        cold_chain.record_reading(pharmacist, place.id, measured_at=utcnow() - timedelta(minutes=5), celsius="12")
    monkeypatch.setattr(digests, "SECTION_ROWS", 1)
    digest = digests.build(main)
    assert len(digest.excursions.rows) == 1 and digest.excursions.total == 3 and digest.excursions.more == 2
    assert digests.counts(main.id)["excursions"] == 3


def test_expired_is_the_application_s_rule_the_clinic_s_day_not_the_site_s(app, make_lot, make_user):
    from compounding.services.expiry import is_expired

    tokyo = add_site("TYO")
    tokyo.timezone = "Asia/Tokyo"
    db.session.commit()
    london_today = utcnow().astimezone(ZoneInfo("Europe/London")).date()
    lot = make_lot(expires_on=london_today)
    lot.site_id, lot.location_id = tokyo.id, sites.default_location(tokyo.id).id
    db.session.commit()
    # 06:30 in Tokyo the next morning: still `london_today` in the clinic's zone, so the lot is usable.
    now = datetime.combine(london_today + timedelta(days=1), time(6, 30), tzinfo=ZoneInfo("Asia/Tokyo"))
    now = now.astimezone(UTC)
    assert not is_expired(lot.expires_on, at=now)
    digest = digests.build(tokyo, now=now)
    assert [(row.code, row.expired) for row in digest.lots.rows] == [(lot.code, False)]
    text, html = digests.render(digest, make_user("pharmacist"))
    assert "EXPIRED" not in text and "expired" not in html.lower()
    assert digests.counts(tokyo.id, now=now) | {} == digests.counts(tokyo.id, now=now)
    assert (digests.counts(tokyo.id, now=now)["expired"], digests.counts(tokyo.id, now=now)["lots"]) == (0, 1)


def test_the_panel_tells_expired_in_stock_from_expiring_as_the_stock_tiles_do(client, make_lot, make_user):
    main = sites.main_site()
    from compounding.services.expiry import last_usable_day

    today = last_usable_day()
    expired = make_lot(expires_on=today + timedelta(days=1))
    expired.expires_on = today - timedelta(days=2)  # received before it expired, still on the shelf
    db.session.commit()
    make_lot(expires_on=today + timedelta(days=5))
    make_lot(expires_on=today + timedelta(days=6))
    figures = digests.counts(main.id)
    assert (figures["expired"], figures["lots"]) == (1, 2)
    sign_in(client, make_user("pharmacist"))
    panel = client.get("/").get_data(as_text=True).split('id="digest-panel"')[1].split("</div>")[0]
    assert "1 lot expired in stock" in panel and "2 lots expiring within 30 days" in panel
    digest = digests.build(main)
    assert digest.lots.total == 3 and [row.expired for row in digest.lots.rows] == [True, False, False]


# --- which day: never ahead, late said so; stale digests superseded ---------------------------------------------


def test_a_day_ahead_of_the_site_s_today_is_refused(mail_on, make_user, runner):
    from compounding.services.errors import InvalidInput

    _pharmacist_with_address(make_user)
    tomorrow = site_today(sites.main_site()) + timedelta(days=1)
    with pytest.raises(InvalidInput, match="has not begun"):
        digests.prepare_due(day=tomorrow)
    assert count_rows(MailMessage) == 0
    result = runner.invoke(args=["send-digests", "--date", tomorrow.isoformat()])
    assert result.exit_code == 1 and "has not begun" in result.output


def test_a_past_day_s_digest_says_it_was_judged_late(mail_on, make_user):
    _pharmacist_with_address(make_user)
    yesterday = site_today(sites.main_site()) - timedelta(days=1)
    [item] = digests.prepare_due(day=yesterday)
    message = db.session.scalar(sa.select(MailMessage))
    assert message.digest_date == yesterday
    assert "Prepared late" in message.body_text and "Prepared late" in message.body_html
    assert "judged at" in message.body_text


def test_a_newer_digest_supersedes_the_older_ones_still_waiting(mail_on, make_user):
    person = _pharmacist_with_address(make_user)
    main = sites.main_site()
    today = site_today(main)
    digests.prepare_due(at_local(main, today - timedelta(days=2), 7))
    digests.prepare_due(at_local(main, today - timedelta(days=1), 7))
    db.session.execute(sa.update(MailMessage).where(MailMessage.digest_date == today - timedelta(days=1))
                       .values(status="failed"))
    db.session.commit()
    digests.prepare_due(at_local(main, today, 7))
    rows = dict(db.session.execute(sa.select(MailMessage.digest_date, MailMessage.status)).all())
    assert rows == {today - timedelta(days=2): "superseded", today - timedelta(days=1): "superseded",
                    today: "pending"}
    assert len(audit_rows("mail.superseded")) == 2
    assert person.id in {row.recipient_id for row in db.session.scalars(sa.select(MailMessage))}


def test_one_site_s_error_does_not_stop_the_others(mail_on, make_user, monkeypatch):
    add_site("LYON")
    _pharmacist_with_address(make_user, "Main", "main@clinic.example")
    _pharmacist_with_address(make_user, "Lyon", "lyon@clinic.example", site_codes=["LYON"])
    real = digests.build

    def build(site, *args, **kwargs):
        if site.code == "LYON":
            raise RuntimeError("a broken row at Lyon")
        return real(site, *args, **kwargs)

    monkeypatch.setattr(digests, "build", build)
    prepared = digests.prepare_due(ignore_hour=True)
    assert [item.site_code for item in prepared] == ["MAIN"]
    assert db.session.scalar(sa.select(MailMessage.to_address)) == "main@clinic.example"


# --- the link opens that site's digest ---------------------------------------------------------------------------


def test_the_mail_s_link_opens_that_site_s_digest_and_only_for_those_who_may_see_it(mail_on, client, make_user):
    lyon = add_site("LYON")
    reader = _pharmacist_with_address(make_user, "Both", "both@clinic.example", site_codes=["MAIN", "LYON"])
    outsider = make_user("pharmacist", site_codes=["MAIN"])
    digests.prepare_due(ignore_hour=True)
    message = db.session.scalar(sa.select(MailMessage).where(MailMessage.site_id == lyon.id))
    assert "http://127.0.0.1:5000/digest?site=LYON" in message.body_text
    assert "/digest?site=LYON" in message.body_html
    sign_in(client, reader)
    page = client.get("/digest?site=LYON").get_data(as_text=True)
    assert "Site LYON" in page
    assert client.get("/digest?site=NOPE").status_code == 404
    client.post("/logout")
    sign_in(client, outsider)
    assert client.get("/digest?site=LYON").status_code == 404
    assert "Site MAIN" in client.get("/digest").get_data(as_text=True)


def test_base_url_left_at_its_default_with_a_mail_server_is_warned_about(mail_on, app, client, make_user, runner):
    assert app.config["BASE_URL"] == "http://127.0.0.1:5000"
    sign_in(client, make_user("admin"))
    assert 'id="base-url-warning"' in client.get("/admin/mail").get_data(as_text=True)
    result = runner.invoke(args=["send-digests", "--now"])
    assert "BASE_URL" in result.output
    app.config["BASE_URL"] = "https://compounding.clinic.example"
    assert 'id="base-url-warning"' not in client.get("/admin/mail").get_data(as_text=True)
