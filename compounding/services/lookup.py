"""Reading one record by id for a use case: the record, or the refusal the caller names."""

from ..extensions import db
from .errors import DomainError


def fetch(model, record_id, refusal: DomainError):
    """The `model` row `record_id` names; `refusal` raised when there is none (or no id was given)."""
    record = db.session.get(model, record_id) if record_id else None
    if record is None:
        raise refusal
    return record
