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
        assert server.inbox.messages == [] and len(report.failed) == 1
        assert "certificate" in report.failed[0][1].lower()
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
    assert message.next_attempt_at.replace(tzinfo=None) == (now + timedelta(minutes=5)).replace(tzinfo=None)
    assert mail.send_due(now + timedelta(minutes=4)).failed == []  # not due yet: not tried
    setattr(smtp.inbox, f"refuse_{refusal}", "")
    later = mail.send_due(now + timedelta(minutes=6))
    assert sorted(later.sent) == outbox["ids"]
    assert statuses() == {"first@clinic.example": "sent", "second@clinic.example": "sent"}
    assert fresh(MailMessage, outbox["ids"][0]).attempts == 2


def test_a_server_that_is_down_loses_nothing(outbox, app, smtp):
    app.config["MAIL_PORT"] = free_port()  # nothing listens there
    now = utcnow()
    report = mail.send_due(now)
    assert report.sent == [] and len(report.failed) == 1  # the first meets the wall; the run stops
    first, second = (fresh(MailMessage, message_id) for message_id in outbox["ids"])
    assert "could not be reached" in first.last_error and first.status == "pending"
    assert second.attempts == 0 and second.next_attempt_at is None  # untouched, still due
    app.config["MAIL_PORT"] = smtp.port
    assert sorted(mail.send_due(now + timedelta(minutes=6)).sent) == outbox["ids"]


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
