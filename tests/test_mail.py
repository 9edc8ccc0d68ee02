"""The mail outbox against a real SMTP server (aiosmtpd on 127.0.0.1): sent once, refusals and outages kept."""

import ssl
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
import trustme
from mailkit import PASSWORD as MAIL_PASSWORD
from mailkit import USERNAME as MAIL_USERNAME
from mailkit import SmtpServer, free_port
from testkit import TEST_DATABASE_URL, audit_rows, fresh, sign_in

from compounding.extensions import db
from compounding.models import MailMessage
from compounding.services import digests, mail
from compounding.services.clock import utcnow


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def outbox(app, smtp, make_user):
    """Two pharmacists of MAIN with an address, and today's digest written for each (not sent yet)."""
    app.config.update(smtp.settings())
    first = make_user("pharmacist", display_name="Dr First", email="first@clinic.example")
    second = make_user("pharmacist", display_name="Dr Second", email="second@clinic.example")
    digests.prepare_due(ignore_hour=True)
    return {"first": first, "second": second,
            "ids": list(db.session.scalars(sa.select(MailMessage.id).order_by(MailMessage.id)))}


def statuses() -> dict[str, str]:
    db.session.expire_all()
    return dict(db.session.execute(sa.select(MailMessage.to_address, MailMessage.status)).all())


def test_each_digest_goes_out_once_as_text_with_an_html_alternative(outbox, smtp):
    report = mail.send_due()
    assert sorted(report.sent) == outbox["ids"] and report.ok
    assert statuses() == {"first@clinic.example": "sent", "second@clinic.example": "sent"}
    [received] = smtp.inbox.to("first@clinic.example")
    assert received["From"] == "Clinic digest <digest@clinic.example>"
    assert received["Subject"].startswith("Digest MAIN ") and received["Date"] and received["Message-ID"]
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "Hello Dr First" in text and "<h1" in html and "Hello Dr First" in html
    # Mail clients drop stylesheets: the shared sections carry their styles inline, none of the page's classes.
    assert 'id="digest-nothing" style="' in html and 'class="' not in html
    assert mail.send_due().sent == [] and len(smtp.inbox.messages) == 2  # sent is sent: never again
    assert fresh(MailMessage, outbox["ids"][0]).sent_at is not None
    assert len(audit_rows("mail.sent")) == 2


def test_starttls_with_the_clinic_s_own_ca_and_a_password(app, make_user, tmp_path):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "clinic-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SmtpServer(tls_context=server_context, auth=True) as server:
        app.config.update(server.settings(MAIL_SECURITY="starttls", MAIL_CA_FILE=str(ca_file),
                                          MAIL_USERNAME=MAIL_USERNAME, MAIL_PASSWORD=MAIL_PASSWORD))
        make_user("pharmacist", email="tls@clinic.example")
        digests.prepare_due(ignore_hour=True)
        assert mail.send_due().ok
        assert [item["tls"] for item in server.inbox.messages] == [True]
        assert server.inbox.logins and all(ok for _, ok in server.inbox.logins)


def test_a_certificate_the_ca_file_does_not_vouch_for_is_a_failure_kept_not_a_message_sent(app, make_user):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    with SmtpServer(tls_context=server_context) as server:
        app.config.update(server.settings(MAIL_SECURITY="starttls"))  # the system's CAs: not this one
        make_user("pharmacist", email="tls@clinic.example")
        digests.prepare_due(ignore_hour=True)
        report = mail.send_due()
        assert server.inbox.messages == [] and report.failed == []
        assert "certificate" in report.error.lower()  # the run's failure: no message is charged a try
        assert statuses() == {"tls@clinic.example": "pending"}


@pytest.mark.parametrize("refusal", ["rcpt", "data"])
def test_a_refusal_is_recorded_retried_later_and_sent_when_the_server_accepts(outbox, smtp, refusal):
    answer = "550 5.7.1 Relaying denied by policy"
    setattr(smtp.inbox, f"refuse_{refusal}", answer)
    now = utcnow()
    report = mail.send_due(now)
    assert report.sent == [] and len(report.failed) == 2
    message = fresh(MailMessage, outbox["ids"][0])
    assert message.status == "pending" and message.attempts == 1
    assert "550" in message.last_error and "Relaying denied" in message.last_error
    waits = message.next_attempt_at.replace(tzinfo=None) - now.replace(tzinfo=None)
    assert timedelta(minutes=5) <= waits < timedelta(minutes=5, seconds=30)
    assert mail.send_due(now + timedelta(minutes=4)).failed == []  # not due yet: not tried
    setattr(smtp.inbox, f"refuse_{refusal}", "")
    later = mail.send_due(now + timedelta(minutes=6))
    assert sorted(later.sent) == outbox["ids"]
    assert statuses() == {"first@clinic.example": "sent", "second@clinic.example": "sent"}
    assert fresh(MailMessage, outbox["ids"][0]).attempts == 2


def test_after_the_last_attempt_a_message_fails_and_admins_see_it_and_send_it_again(outbox, app, smtp, client,
                                                                                    make_user):
    app.config["MAIL_MAX_ATTEMPTS"] = 2
    smtp.inbox.refuse_rcpt = "550 5.1.1 No such mailbox"
    now = utcnow()
    mail.send_due(now)
    mail.send_due(now + timedelta(minutes=6))
    assert set(statuses().values()) == {"failed"}
    assert mail.send_due(now + timedelta(days=1)).failed == []  # given up: not tried on its own again
    admin = make_user("admin")
    sign_in(client, admin)
    assert "2 e-mails could not be sent" in client.get("/").get_data(as_text=True)
    page = client.get("/admin/mail?status=failed").get_data(as_text=True)
    assert page.count('class="table-danger"') == 2 and "550 5.1.1 No such mailbox" in page
    response = client.post(f"/admin/mail/{outbox['ids'][0]}/send-again")
    assert response.status_code == 302
    assert fresh(MailMessage, outbox["ids"][0]).status == "pending"
    assert [row.entity_id for row in audit_rows("mail.resend")] == [outbox["ids"][0]]
    smtp.inbox.refuse_rcpt = ""
    assert mail.send_due().sent == [outbox["ids"][0]]
    assert client.post(f"/admin/mail/{outbox['ids'][0]}/send-again").status_code == 302  # sent: refused, kept
    assert fresh(MailMessage, outbox["ids"][0]).status == "sent"


def test_only_admins_see_the_outbox(outbox, client, make_user):
    sign_in(client, make_user("pharmacist"))
    assert client.get("/admin/mail").status_code == 403
    assert client.post(f"/admin/mail/{outbox['ids'][0]}/send-again").status_code == 403


def test_without_a_mail_server_nothing_is_sent_and_nothing_is_written(app, make_user):
    make_user("pharmacist", email="first@clinic.example")
    assert not app.config["MAIL_SERVER"]
    assert digests.prepare_due(ignore_hour=True) == [] and mail.send_due().sent == []
    assert db.session.scalar(sa.select(sa.func.count(MailMessage.id))) == 0


def test_two_senders_at_once_send_each_message_once(outbox, smtp, app):
    if TEST_DATABASE_URL.startswith("postgresql"):
        barrier = threading.Barrier(2)
        reports = []

        def run():
            with app.app_context():
                barrier.wait()
                reports.append(mail.send_due())
                db.session.remove()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        sent = sorted(message_id for report in reports for message_id in report.sent)
    else:  # SQLite in memory is one connection: one after the other
        sent = sorted(mail.send_due().sent + mail.send_due().sent)
    assert sent == outbox["ids"]
    assert len(smtp.inbox.messages) == 2


def test_a_claimed_message_is_not_claimed_twice(outbox):
    now = utcnow()
    assert mail.claim(outbox["ids"][0], now) is True
    assert mail.claim(outbox["ids"][0], now) is False
    assert mail.claim(outbox["ids"][0], now + mail.LEASE + timedelta(seconds=1)) is True  # its worker stopped


def test_send_digests_prepares_and_sends_and_says_so(app, smtp, make_user, runner):
    app.config.update(smtp.settings())
    make_user("pharmacist", email="cli@clinic.example")
    result = runner.invoke(args=["send-digests", "--site", "MAIN", "--now"])
    assert result.exit_code == 0, result.output
    assert "Prepared the digest of MAIN" in result.output and "cli@clinic.example" in result.output
    assert "Sent 1 message(s)." in result.output and len(smtp.inbox.messages) == 1
    again = runner.invoke(args=["send-digests", "--now"])
    assert again.exit_code == 0 and "No digest to prepare" in again.output and len(smtp.inbox.messages) == 1


def test_send_digests_exits_1_when_a_message_is_refused(app, smtp, make_user, runner):
    app.config.update(smtp.settings())
    make_user("pharmacist", email="cli@clinic.example")
    smtp.inbox.refuse_rcpt = "550 5.1.1 No such mailbox"
    result = runner.invoke(args=["send-digests", "--now"])
    assert result.exit_code == 1 and "550 5.1.1 No such mailbox" in result.output
    assert statuses() == {"cli@clinic.example": "pending"}


def test_send_digests_without_a_mail_server_says_where_digests_are_read(runner):
    result = runner.invoke(args=["send-digests", "--now"])
    assert result.exit_code == 1 and "/digest" in result.output


def test_create_user_takes_an_address_and_refuses_one_that_is_not(runner):
    from compounding.models import User

    ok = runner.invoke(args=["create-user", "ana", "--role", "pharmacist", "--password", "a-long-enough-passphrase-9",
                             "--email", "Ana@Clinic.EXAMPLE"])
    assert ok.exit_code == 0, ok.output
    assert db.session.scalar(sa.select(User.email).where(User.username == "ana")) == "Ana@clinic.example"
    bad = runner.invoke(args=["create-user", "bea", "--role", "pharmacist", "--password", "a-long-enough-passphrase-9",
                              "--email", "bea at clinic"])
    assert bad.exit_code == 1 and "e-mail address" in bad.output
    assert db.session.scalar(sa.select(User.id).where(User.username == "bea")) is None


# --- who it goes to is asked again when it is sent ------------------------------------------------------------


def _one_prepared(app, smtp, make_user, email="leaving@clinic.example"):
    app.config.update(smtp.settings())
    person = make_user("pharmacist", display_name="Dr Leaving", email=email)
    digests.prepare_due(ignore_hour=True)
    return person, db.session.scalar(sa.select(MailMessage))


@pytest.mark.parametrize("change", ["deactivated", "left the site", "address removed", "no longer a pharmacist",
                                    "site closed"])
def test_a_recipient_no_longer_entitled_when_it_is_sent_is_not_written_to(app, smtp, make_user, change):
    from compounding.models import Site, UserSite
    from compounding.services import users

    person, message = _one_prepared(app, smtp, make_user)
    admin = make_user("admin")
    if change == "deactivated":
        users.set_active(admin, person, False, reason="left the clinic")
    elif change == "left the site":
        db.session.execute(sa.delete(UserSite).where(UserSite.user_id == person.id))
        db.session.commit()
    elif change == "address removed":
        users.set_own_email(person, "")
    elif change == "no longer a pharmacist":
        person.role = "technician"
        db.session.commit()
    else:
        db.session.execute(sa.update(Site).where(Site.id == message.site_id).values(active=False))
        db.session.commit()
    report = mail.send_due()
    assert smtp.inbox.messages == [] and report.sent == [] and [i for i, _ in report.cancelled] == [message.id]
    message = fresh(MailMessage, message.id)
    assert message.status == "cancelled" and message.last_error.startswith("Not sent:")
    assert [row.entity_id for row in audit_rows("mail.cancelled")] == [message.id]
    assert mail.send_due().cancelled == []  # cancelled is final


def test_the_address_is_read_from_the_person_when_sent_so_a_corrected_typo_is_used(app, smtp, make_user):
    from compounding.services import users

    person, message = _one_prepared(app, smtp, make_user, email="typo@clinic.example")
    app.config["MAIL_MAX_ATTEMPTS"] = 2
    smtp.inbox.refuse_rcpt = "450 4.1.1 Mailbox busy"
    mail.send_due()
    mail.send_due(utcnow() + timedelta(hours=1))
    assert fresh(MailMessage, message.id).status == "failed"
    users.set_own_email(person, "right@clinic.example")
    mail.send_again(make_user("admin"), message.id)
    smtp.inbox.refuse_rcpt = ""
    assert mail.send_due().sent == [message.id]
    assert smtp.inbox.to("right@clinic.example") and not smtp.inbox.to("typo@clinic.example")
    assert fresh(MailMessage, message.id).to_address == "right@clinic.example"


def test_send_again_asks_the_same_question_and_refuses_a_recipient_who_left(app, smtp, make_user):
    from compounding.services import users
    from compounding.services.errors import InvalidState

    person, message = _one_prepared(app, smtp, make_user)
    db.session.execute(sa.update(MailMessage).values(status="failed", attempts=3))
    db.session.commit()
    admin = make_user("admin")
    users.set_active(admin, person, False, reason="left")
    with pytest.raises(InvalidState, match="no longer active"):
        mail.send_again(admin, message.id)
    assert fresh(MailMessage, message.id).status == "failed" and audit_rows("mail.resend") == []


# --- a failure of any kind is kept on its message; the clock is read at each step ------------------------------


def test_a_message_that_cannot_be_composed_is_a_failure_kept_and_the_others_go(outbox, smtp, monkeypatch):
    real = mail.compose

    def compose(message):
        if message.id == outbox["ids"][0]:
            raise ValueError("a header that cannot be written")
        return real(message)

    monkeypatch.setattr(mail, "compose", compose)
    report = mail.send_due()
    assert report.sent == [outbox["ids"][1]]
    assert report.failed == [(outbox["ids"][0], "ValueError: a header that cannot be written")]
    first = fresh(MailMessage, outbox["ids"][0])
    assert first.status == "pending" and first.attempts == 1 and "cannot be written" in first.last_error


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_password_the_server_cannot_take_ends_the_run_is_shown_and_raises_nothing(app, make_user, client):
    with SmtpServer(auth=True) as server:
        app.config.update(server.settings(MAIL_USERNAME="digest-sender", MAIL_PASSWORD="contraseña"))
        make_user("pharmacist", email="dr@clinic.example")
        digests.prepare_due(ignore_hour=True)
        report = mail.send_due()
    assert report.error and "UnicodeEncodeError" in report.error and not report.ok
    message = db.session.scalar(sa.select(MailMessage))
    assert message.status == "pending" and message.attempts == 0  # the server was never asked: no try is charged
    [row] = audit_rows("mail.unreachable")
    assert "UnicodeEncodeError" in row.new_values["error"]
    sign_in(client, make_user("admin"))
    assert "UnicodeEncodeError" in client.get("/admin/mail").get_data(as_text=True)


def test_a_worker_that_stops_while_sending_still_counts_the_try_and_the_message_fails_in_the_end(outbox, app):
    app.config["MAIL_MAX_ATTEMPTS"] = 2
    message_id = outbox["ids"][0]
    now = utcnow()
    assert mail.claim(message_id, now)  # the worker is killed here, before the server answers
    assert fresh(MailMessage, message_id).attempts == 1
    later = now + mail.LEASE + timedelta(minutes=1)
    assert mail.claim(message_id, later)  # and again
    assert mail.claim(message_id, later + mail.LEASE + timedelta(minutes=1)) is False
    message = fresh(MailMessage, message_id)
    assert message.status == "failed" and message.attempts == 2 and "stopped" in message.last_error


def test_the_lease_runs_from_the_moment_of_the_claim_not_the_start_of_the_run(outbox):
    run_started = utcnow() - timedelta(minutes=11)  # a slow run, 11 minutes in
    assert mail.claim(outbox["ids"][0], run_started)
    assert mail.claim(outbox["ids"][0], utcnow()) is False  # a second worker's run now: the lease holds
    message = fresh(MailMessage, outbox["ids"][0])
    assert message.next_attempt_at.replace(tzinfo=None) > (utcnow() + timedelta(minutes=9)).replace(tzinfo=None)


def test_send_again_is_refused_while_a_worker_sends_it(outbox, make_user):
    from compounding.services.errors import InvalidState

    admin = make_user("admin")
    with pytest.raises(InvalidState, match="not been tried yet"):
        mail.send_again(admin, outbox["ids"][0])
    assert mail.claim(outbox["ids"][0], utcnow())
    with pytest.raises(InvalidState, match="being sent now") as refused:
        mail.send_again(admin, outbox["ids"][0])
    assert refused.value.status_code == 409
    assert mail.claim(outbox["ids"][0], utcnow()) is False  # still the first worker's
    assert audit_rows("mail.resend") == []


# --- addresses: what smtplib can write ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["joão@clinica.example", "a,b@clinic.example", '"x"@clinic.example',
                                 "a<b@clinic.example"])
def test_an_address_smtp_cannot_carry_is_refused_with_a_message(raw):
    from compounding.services.errors import InvalidInput
    from compounding.services.users import checked_email

    with pytest.raises(InvalidInput, match="e-mail address"):
        checked_email(raw)


def test_an_accented_domain_is_kept_in_its_ascii_form():
    from compounding.services.users import checked_email

    assert checked_email("ana@Clínica.Example") == "ana@xn--clnica-4va.example"


def test_a_message_the_server_cannot_carry_fails_alone_and_the_run_goes_on(app, make_user):
    with SmtpServer(smtputf8=False) as server:
        app.config.update(server.settings())
        make_user("pharmacist", display_name="Dr Joao", email="joao@clinica.example")
        make_user("pharmacist", display_name="Dr Ana", email="ana@clinica.example")
        digests.prepare_due(ignore_hour=True)
        first = db.session.scalar(sa.select(MailMessage).order_by(MailMessage.id))
        first.to_address = "joão@clinica.example"  # written before addresses were checked for this
        db.session.execute(sa.text("UPDATE users SET email = 'joão@clinica.example' WHERE email LIKE 'joao@%'"))
        db.session.commit()
        report = mail.send_due()
        assert [message_id for message_id, _ in report.failed] == [first.id] and not report.error
        assert server.inbox.to("ana@clinica.example")


# --- a server that is down is the run's failure, not the message's ---------------------------------------------


def test_a_server_that_is_down_charges_no_message_and_admins_see_mail_is_not_going_out(outbox, app, smtp, client,
                                                                                     make_user):
    app.config["MAIL_PORT"] = free_port()
    report = mail.send_due()
    assert "could not be reached" in report.error and report.failed == []
    for message_id in outbox["ids"]:
        message = fresh(MailMessage, message_id)
        assert message.status == "pending" and message.attempts == 0
    assert len(audit_rows("mail.unreachable")) == 1
    db.session.execute(sa.update(MailMessage).values(created_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    sign_in(client, make_user("admin"))
    dashboard = client.get("/").get_data(as_text=True)
    assert 'id="mail-stuck"' in dashboard and "2 e-mails have waited more than an hour" in dashboard
    page = client.get("/admin/mail").get_data(as_text=True)
    assert 'id="mail-last-error"' in page and "could not be reached" in page
    app.config["MAIL_PORT"] = smtp.port
    assert sorted(mail.send_due().sent) == outbox["ids"]
    assert 'id="mail-stuck"' not in client.get("/").get_data(as_text=True)
    assert 'id="mail-last-error"' not in client.get("/admin/mail").get_data(as_text=True)


def test_a_permanent_refusal_gives_up_after_two_tries(outbox, smtp, app):
    app.config["MAIL_MAX_ATTEMPTS"] = 5
    smtp.inbox.refuse_rcpt = "550 5.1.1 No such mailbox"
    mail.send_due()
    mail.send_due(utcnow() + timedelta(hours=1))
    assert set(statuses().values()) == {"failed"}
