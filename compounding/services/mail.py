"""The mail outbox: messages written by the digests, sent over SMTP by whichever worker claims them.

A message is claimed by one UPDATE that moves its next attempt a lease ahead (committed
before the server is spoken to), so two workers never send it twice. Then it is marked sent,
or its failure is kept: the server's answer, one more attempt, and the next try 5, 10, 20...
minutes later; after MAIL_MAX_ATTEMPTS it is `failed`, shown to admins, who may send it again.
A refusal (5xx) and a server that is down are both recorded and nothing is raised: nothing is
lost, the message waits in the database. Without MAIL_SERVER nothing is sent.
"""

import contextlib
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import MailMessage, User
from . import audit
from .clock import utcnow
from .errors import InvalidState, NotFound
from .transaction import transaction, transactional

# How long a claimed message is left to its worker before another may try it (a worker that stopped).
LEASE = timedelta(minutes=10)
FIRST_RETRY = timedelta(minutes=5)
# At most this many messages per run: the rest wait for the next run (every 5 minutes).
BATCH = 200
ERROR_MAX = 2000


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 5, 10, 20, 40... minutes."""
    return FIRST_RETRY * (2 ** max(0, attempts - 1))


def due_ids(now: datetime, limit: int = BATCH) -> list[int]:
    return list(db.session.scalars(
        sa.select(MailMessage.id)
        .where(MailMessage.status == "pending",
               sa.or_(MailMessage.next_attempt_at.is_(None), MailMessage.next_attempt_at <= now))
        .order_by(MailMessage.id).limit(limit)))


def claim(message_id: int, now: datetime) -> bool:
    """Take the message for this worker (committed at once); False when another took it or it is not due."""
    with transaction():
        taken = db.session.execute(
            sa.update(MailMessage)
            .where(MailMessage.id == message_id, MailMessage.status == "pending",
                   sa.or_(MailMessage.next_attempt_at.is_(None), MailMessage.next_attempt_at <= now))
            .values(next_attempt_at=now + LEASE, last_attempt_at=now)
            .execution_options(synchronize_session=False)).rowcount
    return taken == 1


def compose(message: MailMessage) -> EmailMessage:
    """The message as the server receives it: plain text with an HTML alternative."""
    config = current_app.config
    sender = config.get("MAIL_FROM") or f"compounding@{_domain()}"
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = sender
    email["To"] = message.to_address
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = make_msgid(idstring=f"mail{message.id}", domain=_domain(sender))
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.body_text)
    email.add_alternative(message.body_html, subtype="html")
    return email


def _domain(sender: str = "") -> str:
    if "@" in sender:
        return sender.rsplit("@", 1)[1].strip("> ")
    return current_app.config.get("MAIL_SERVER") or socket.getfqdn()


def connect() -> smtplib.SMTP:
    """A connection to MAIL_SERVER as MAIL_SECURITY says (starttls, ssl or none), signed in if a username is set."""
    config = current_app.config
    host, port, timeout = config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_TIMEOUT"]
    security = config.get("MAIL_SECURITY") or "starttls"
    context = ssl.create_default_context(cafile=config.get("MAIL_CA_FILE")) if security != "none" else None
    if security == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        if security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def describe(error: BaseException) -> str:
    """The server's answer (code and text) or what stopped the connection, for the admin's page."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = [f"{address}: {code} {_text(text)}" for address, (code, text) in error.recipients.items()]
        return "Recipient refused: " + "; ".join(answers)
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"The mail server closed the connection: {error}"
    if isinstance(error, TimeoutError):
        return f"The mail server did not answer in time: {error}"
    if isinstance(error, ssl.SSLError):
        return f"The mail server's TLS was refused: {error}"
    if isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException):
        return f"The mail server could not be reached: {error}"
    return f"{type(error).__name__}: {error}"


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _connection_lost(error: BaseException) -> bool:
    """Whether the next message would meet the same wall: server down, connection dropped, TLS or sign-in
    refused, sender refused. A refused recipient or message (smtplib's errors are OSErrors too) is not."""
    if isinstance(error, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, smtplib.SMTPHeloError,
                          smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError,
                          smtplib.SMTPSenderRefused)):
        return True
    return isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException)


def _mark_sent(message_id: int, now: datetime) -> None:
    with transaction():
        message = db.session.get(MailMessage, message_id, populate_existing=True)
        message.status = "sent"
        message.sent_at = now
        message.attempts += 1
        message.next_attempt_at = None
        message.last_error = ""
        audit.record(None, "mail.sent", "mail_message", message.id,
                     new={"to": message.to_address, "attempts": message.attempts})


def _mark_failed(message_id: int, now: datetime, error: str) -> str:
    with transaction():
        message = db.session.get(MailMessage, message_id, populate_existing=True)
        message.attempts += 1
        message.last_error = error[:ERROR_MAX]
        if message.attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]:
            message.status = "failed"
            message.next_attempt_at = None
        else:
            message.next_attempt_at = now + retry_delay(message.attempts)
        audit.record(None, "mail.failed", "mail_message", message.id,
                     new={"to": message.to_address, "attempts": message.attempts, "status": message.status,
                          "next_attempt_at": message.next_attempt_at, "error": message.last_error})
        return message.status


def send_due(now: datetime | None = None) -> SendReport:
    """Send every pending message that is due, over one connection; never raises for a mail server's fault.

    A connection that fails (server down, sign-in refused) fails the message being sent and ends
    the run: the others stay pending, untouched, for the next run.
    """
    report = SendReport()
    if not current_app.config.get("MAIL_SERVER"):
        return report
    now = now or utcnow()
    smtp = None
    try:
        for message_id in due_ids(now):
            if not claim(message_id, now):
                continue
            message = db.session.get(MailMessage, message_id, populate_existing=True)
            try:
                email = compose(message)
                if smtp is None:
                    smtp = connect()
                smtp.send_message(email, to_addrs=[message.to_address])
            except (smtplib.SMTPException, OSError) as error:
                text = describe(error)
                _mark_failed(message_id, now, text)
                report.failed.append((message_id, text))
                if _connection_lost(error):
                    break
                _reset(smtp)
            else:
                _mark_sent(message_id, now)
                report.sent.append(message_id)
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    return report


def _reset(smtp) -> None:
    """After a refused message the conversation is reset (RSET) so the next one starts clean."""
    if smtp is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.rset()


@transactional
def send_again(actor: User, message_id: int) -> MailMessage:
    """A failed (or waiting) message goes back to the outbox, to be tried at the next run."""
    message = db.session.get(MailMessage, message_id, with_for_update=True)
    if message is None:
        raise NotFound("There is no such message.")
    if message.status == "sent":
        raise InvalidState("This message was sent already.")
    old = {"status": message.status, "next_attempt_at": message.next_attempt_at}
    message.status = "pending"
    message.next_attempt_at = None
    audit.record(actor, "mail.resend", "mail_message", message.id, old=old,
                 new={"status": "pending", "to": message.to_address})
    return message
