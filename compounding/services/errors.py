"""Domain errors: raised by services before anything changes, turned into messages by views."""


class DomainError(Exception):
    """A rule said no. `field` names the input at fault, when there is one."""

    status_code = 409

    def __init__(self, message: str, *, field: str | None = None, details=None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_details(self):
        if self.details is not None:
            return self.details
        return {self.field: [self.message]} if self.field else None


class InvalidInput(DomainError):
    status_code = 422


class NotFound(DomainError):
    status_code = 404


class NotAllowed(DomainError):
    status_code = 403


class SignatureRejected(DomainError):
    """The re-entered password did not match: nothing is signed, nothing changes."""

    status_code = 403


class InvalidState(DomainError):
    status_code = 409


class TooLarge(DomainError):
    """An upload over its limit (413)."""

    status_code = 413


class Gone(DomainError):
    """A download kept for a set time and since deleted (410): ask for it again."""

    status_code = 410


class Unavailable(DomainError):
    """A part the request needs (the file store) did not answer: nothing changed, try again (503)."""

    status_code = 503


class InsufficientStock(DomainError):
    status_code = 409

