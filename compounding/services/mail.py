"""The mail outbox: messages written by the digests, sent over SMTP by whichever worker claims them.

A run connects first: a server that is down, a TLS or sign-in refused, a setting smtplib cannot
use end the run before any message is touched (no message is charged a try), recorded as an
audit row `mail.unreachable` that the admin's mail page shows. Then each due message is claimed
by one UPDATE (`sending`, one more try counted, a lease of LEASE from the moment of the claim),
committed before the server is spoken to, so two workers never send it twice and a worker that
stops while sending still used a try. In the same transaction its recipient is asked again
(still active, a pharmacist, a member of the active site, with an address: the address is read
now, so a corrected typo is used); a recipient who may no longer have it makes it `cancelled`.
Then it is marked sent, or its failure is kept (whatever the exception: the server's answer or
what went wrong), the next try 5, 10, 20... minutes later; after MAIL_MAX_ATTEMPTS tries (2 for
a permanent 5xx refusal) it is `failed`, shown to admins, who may send it again. Nothing is
raised for a mail server's fault: the message waits in the database. Without MAIL_SERVER nothing
is sent.
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
from . import audit, digests
from .clock import utcnow
from .errors import InvalidState, NotFound
from .transaction import transaction, transactional

# How long a claimed message is left to its worker before another may try it (a worker that stopped).
LEASE = timedelta(minutes=10)
FIRST_RETRY = timedelta(minutes=5)
# At most this many messages per run: the rest wait for the next run (every 5 minutes).
BATCH = 200
ERROR_MAX = 2000
# A permanent refusal (5xx) is given up after this many tries, whatever MAIL_MAX_ATTEMPTS says.
PERMANENT_ATTEMPTS = 2


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    cancelled: list[tuple[int, str]] = field(default_factory=list)
    # What ended the run before its end (the server down, TLS or sign-in refused), charged to no message.
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 5, 10, 20, 40... minutes."""
    return FIRST_RETRY * (2 ** max(0, attempts - 1))


def _clock(now: datetime) -> datetime:
    """The moment of a claim or a mark: the clock now, never the run's start (a run may be slow)."""
    return max(now, utcnow())


def _due(now: datetime):
    """Waiting for its try, or held by a worker whose lease ran out (it stopped while sending)."""
    return sa.or_(
        sa.and_(MailMessage.status == "pending",
                sa.or_(MailMessage.next_attempt_at.is_(None), MailMessage.next_attempt_at <= now)),
        sa.and_(MailMessage.status == "sending", MailMessage.next_attempt_at <= now))


def due_ids(now: datetime, limit: int = BATCH) -> list[int]:
    return list(db.session.scalars(
        sa.select(MailMessage.id).where(_due(now)).order_by(MailMessage.id).limit(limit)))


STOPPED = "The previous try stopped before the server answered (its worker stopped)."


def claim(message_id: int, now: datetime) -> bool:
    """Take the message for this worker (committed at once); False when another took it, it is not due, or it
    may no longer be sent (cancelled, or failed after a worker stopped with it)."""
    return _claim(message_id, now)[0] == "taken"


def _claim(message_id: int, now: datetime) -> tuple[str, str]:
    moment = _clock(now)
    with transaction():
        taken = {}
        for status, due in (("pending", sa.or_(MailMessage.next_attempt_at.is_(None),
                                              MailMessage.next_attempt_at <= now)),
                            ("sending", MailMessage.next_attempt_at <= now)):
            taken[status] = db.session.execute(
                sa.update(MailMessage)
                .where(MailMessage.id == message_id, MailMessage.status == status, due)
                .values(status="sending", attempts=MailMessage.attempts + 1, last_attempt_at=moment,
                        next_attempt_at=moment + LEASE)
                .execution_options(synchronize_session=False)).rowcount
            if taken[status]:
                break
        else:
            return "busy", ""
        message = db.session.get(MailMessage, message_id, populate_existing=True)
        if taken.get("sending"):  # its last worker stopped while sending: that try counts
            message.last_error = STOPPED
            if message.attempts > current_app.config["MAIL_MAX_ATTEMPTS"]:
                message.attempts -= 1
                _give_up(message, STOPPED)
                return "failed", STOPPED
        why, address = digests.still_entitled(message.recipient_id, message.site_id)
        if why:
            message.attempts -= 1  # not tried: it is not sent at all
            message.status = "cancelled"
            message.next_attempt_at = None
            message.last_error = f"Not sent: {why}"
            audit.record(None, "mail.cancelled", "mail_message", message.id,
                         new={"to": message.to_address, "reason": why})
            return "cancelled", message.last_error
        message.to_address = address
    return "taken", ""


def _give_up(message: MailMessage, error: str) -> None:
    message.status = "failed"
    message.next_attempt_at = None
    audit.record(None, "mail.failed", "mail_message", message.id,
                 new={"to": message.to_address, "attempts": message.attempts, "status": "failed", "error": error})


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


def _permanent(error: BaseException) -> bool:
    """A 5xx answer: the server will say the same next time (no such mailbox, policy)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _connection_lost(error: BaseException) -> bool:
    """Whether the next message would meet the same wall: connection dropped, sender refused. A refused
    recipient or message, or one smtplib cannot write (SMTPNotSupportedError: an address needing SMTPUTF8),
    is not (smtplib's errors are OSErrors too)."""
    if isinstance(error, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, smtplib.SMTPHeloError,
                          smtplib.SMTPSenderRefused)):
        return True
    return isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException)


def _mark_sent(message_id: int, now: datetime) -> None:
    with transaction():
        message = db.session.get(MailMessage, message_id, populate_existing=True)
        message.status = "sent"
        message.sent_at = _clock(now)
        message.next_attempt_at = None
        message.last_error = ""
        audit.record(None, "mail.sent", "mail_message", message.id,
                     new={"to": message.to_address, "attempts": message.attempts})


def _mark_failed(message_id: int, now: datetime, error: str, *, permanent: bool = False) -> str:
    """The try (counted when claimed) failed: the next one later, or given up."""
    limit = current_app.config["MAIL_MAX_ATTEMPTS"]
    if permanent:
        limit = min(limit, PERMANENT_ATTEMPTS)
    with transaction():
        message = db.session.get(MailMessage, message_id, populate_existing=True)
        message.last_error = error[:ERROR_MAX]
        if message.attempts >= limit:
            _give_up(message, message.last_error)
            return message.status
        message.status = "pending"
        message.next_attempt_at = _clock(now) + retry_delay(message.attempts)
        audit.record(None, "mail.failed", "mail_message", message.id,
                     new={"to": message.to_address, "attempts": message.attempts, "status": message.status,
                          "next_attempt_at": message.next_attempt_at, "error": message.last_error})
        return message.status


def _unreachable(error: str, now: datetime, waiting: int, message_id: int | None = None) -> None:
    """The run ended on the server (or a setting), not on a message: an audit row the admin's page shows. A
    message held when the connection dropped goes back to wait, its try not charged."""
    with transaction():
        if message_id is not None:
            message = db.session.get(MailMessage, message_id, populate_existing=True)
            message.status = "pending"
            message.attempts -= 1
            message.last_error = error[:ERROR_MAX]
            message.next_attempt_at = _clock(now) + FIRST_RETRY
        audit.record(None, "mail.unreachable", "mail_server", None,
                     new={"server": current_app.config.get("MAIL_SERVER"), "error": error[:ERROR_MAX],
                          "waiting": waiting, "message_id": message_id})


def send_due(now: datetime | None = None) -> SendReport:
    """Send every due message over one connection; never raises for a mail server's or a message's fault.

    A connection that cannot be made, or that drops, ends the run (`report.error`, an audit row
    `mail.unreachable`): the messages stay pending, no try charged, for the next run.
    """
    report = SendReport()
    if not current_app.config.get("MAIL_SERVER"):
        return report
    now = now or utcnow()
    ids = due_ids(now)
    if not ids:
        return report
    try:
        smtp = connect()
    except Exception as error:  # noqa: BLE001 (server down, TLS, sign-in, a setting smtplib cannot use)
        report.error = describe(error)
        _unreachable(report.error, now, len(ids))
        return report
    try:
        for message_id in ids:
            outcome, why = _claim(message_id, now)
            if outcome == "cancelled":
                report.cancelled.append((message_id, why))
            elif outcome == "failed":
                report.failed.append((message_id, why))
            if outcome != "taken":
                continue
            try:
                message = db.session.get(MailMessage, message_id, populate_existing=True)
                smtp.send_message(compose(message), to_addrs=[message.to_address])
            except Exception as error:  # noqa: BLE001 (whatever it is, it is this message's failed try)
                text = describe(error)
                if _connection_lost(error):
                    report.error = text
                    _unreachable(text, now, len(ids), message_id)
                    break
                _mark_failed(message_id, now, text, permanent=_permanent(error))
                report.failed.append((message_id, text))
                _reset(smtp)
            else:
                _mark_sent(message_id, now)
                report.sent.append(message_id)
    finally:
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
    """A failed message (or one waiting for its next try) goes back to the outbox, to be tried at the next run;
    never while a worker sends it, and only to a recipient who may still have it."""
    message = db.session.get(MailMessage, message_id, with_for_update=True)
    if message is None:
        raise NotFound("There is no such message.")
    now = utcnow()
    if message.status == "sending" and message.next_attempt_at is not None and message.next_attempt_at > now:
        raise InvalidState("This message is being sent now: see how it went in a few minutes.")
    if message.status == "pending" and not message.attempts:
        raise InvalidState("This message has not been tried yet: it goes at the next run.")
    if message.status not in ("failed", "pending", "sending"):
        raise InvalidState(f"This message is {message.status}: it is not sent again.")
    why, address = digests.still_entitled(message.recipient_id, message.site_id)
    if why:
        raise InvalidState(f"Not sent again: {why}")
    old = {"status": message.status, "next_attempt_at": message.next_attempt_at, "to": message.to_address}
    message.status = "pending"
    message.next_attempt_at = None
    message.to_address = address
    audit.record(actor, "mail.resend", "mail_message", message.id, old=old,
                 new={"status": "pending", "to": message.to_address})
    return message


# How long a message may wait before the admins are told mail is not going out.
STUCK_AFTER = timedelta(hours=1)


@dataclass
class SenderState:
    """What the admin's mail page and dashboard say about the sender as a whole."""

    last_error: str = ""
    last_error_at: datetime | None = None
    # Messages written more than STUCK_AFTER ago and still waiting (pending or held by a worker).
    stuck: int = 0


def sender_state(now: datetime | None = None) -> SenderState:
    """The newest run that ended on the server (if no message went out since) and the messages waiting too
    long: three statements."""
    from ..models import AuditEvent

    now = now or utcnow()
    state = SenderState()
    newest = db.session.execute(
        sa.select(AuditEvent.id, AuditEvent.occurred_at, AuditEvent.new_values)
        .where(AuditEvent.action == "mail.unreachable").order_by(AuditEvent.id.desc()).limit(1)).first()
    if newest is not None:
        sent_since = db.session.scalar(
            sa.select(AuditEvent.id).where(AuditEvent.action == "mail.sent", AuditEvent.id > newest.id).limit(1))
        if sent_since is None:
            state.last_error = (newest.new_values or {}).get("error", "")
            state.last_error_at = newest.occurred_at
    state.stuck = db.session.scalar(
        sa.select(sa.func.count(MailMessage.id))
        .where(MailMessage.status.in_(("pending", "sending")), MailMessage.created_at < now - STUCK_AFTER))
    return state
