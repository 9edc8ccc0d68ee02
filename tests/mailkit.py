"""A real SMTP server for the mail tests (aiosmtpd on 127.0.0.1), which keeps what it receives.

It can refuse recipients or the message (a 5xx answer, as a server's policy does), speak
STARTTLS with a certificate of a test CA (trustme), ask for a password, and refuse SMTPUTF8.
"""

import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME, PASSWORD = "digest-sender", "mail-secret"


def free_port() -> int:
    """A port nothing listens on (now): for a server, or for a server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Inbox:
    """What the server took, and how it answers: `refuse_rcpt` / `refuse_data` make it say 550."""

    messages: list = field(default_factory=list)
    refuse_rcpt: str = ""
    refuse_data: str = ""
    logins: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.refuse_data:
            return self.refuse_data
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "message": message_from_bytes(envelope.content, policy=policy.default),
                              "tls": session.ssl is not None})
        return "250 Message accepted"

    def to(self, address: str) -> list:
        return [item["message"] for item in self.messages if address in item["to"]]


class SmtpServer:
    """One aiosmtpd server on a free port, started and stopped by the fixture."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, auth: bool = False, smtputf8: bool = True):
        self.inbox = Inbox()
        self.port = free_port()
        # smtputf8=False: a server that cannot take an address in UTF-8 (most of them).
        options = {"enable_SMTPUTF8": smtputf8}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if auth:
            options.update(authenticator=self._authenticate, auth_required=True,
                           auth_require_tls=tls_context is not None)
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USERNAME.encode(), PASSWORD.encode())
        self.inbox.logins.append((mechanism, ok))
        return AuthResult(success=ok)

    def settings(self, **overrides) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port, "MAIL_SECURITY": "none",
                "MAIL_FROM": "Clinic digest <digest@clinic.example>", "MAIL_TIMEOUT": 5, **overrides}

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
