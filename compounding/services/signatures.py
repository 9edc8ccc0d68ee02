"""E-signatures: the signer re-enters their password; name, time and meaning are kept."""

import sqlalchemy as sa

from ..extensions import db
from ..models import Signature, User
from ..models.audit import SIGNATURE_MEANINGS
from . import audit
from .attempts import check_signing_password
from .clock import utcnow
from .errors import NotAllowed, SignatureRejected


def sign(signer: User, password: str, meaning: str, entity_type: str, entity_id: int) -> Signature:
    """Record `signer`'s signature on a record, in the caller's transaction.

    The signer is always the acting user: nobody can sign for another account. A wrong or
    empty password raises SignatureRejected (403) and nothing is signed; it counts with
    failed sign-ins, and after too many the account cannot sign for a while (403 saying so).
    Either refusal discards the caller's unfinished work and keeps only the failure and its
    audit row (services.attempts).
    """
    if meaning not in SIGNATURE_MEANINGS:
        raise ValueError(f"unknown signature meaning {meaning!r}")
    check_signing_password(
        signer, password,
        doing=f"sign {entity_type} {entity_id} as {meaning}",
        subject={"entity_type": entity_type, "entity_id": entity_id, "meaning": meaning},
        refused=SignatureRejected("Signature refused: the password is not correct. Nothing was signed.",
                                  field="password"),
    )
    signature = Signature(
        signer_id=signer.id,
        signer_name=signer.display_name,
        signed_at=utcnow(),
        meaning=meaning,
        entity_type=entity_type,
        entity_id=entity_id,
    )
    db.session.add(signature)
    db.session.flush()
    audit.record(signer, "signature." + meaning.replace(" ", "_"), entity_type, entity_id,
                 new={"signature_id": signature.id, "signer": signer.display_name,
                      "meaning": meaning, "signed_at": signature.signed_at})
    return signature


def pharmacist_signs(signer: User, password: str, meaning: str, entity_type: str, entity_id: int,
                     doing: str) -> Signature:
    """A pharmacist's signature: the caller must be a pharmacist signing with their own password.

    Anyone else, or a wrong password, is refused (403) before anything is written.
    """
    if signer is None or not signer.active or signer.role != "pharmacist":
        raise NotAllowed(f"Only a pharmacist's signature can {doing}.", field="password")
    return sign(signer, password, meaning, entity_type, entity_id)


def signatures_for(entity_type: str, entity_id: int) -> list[Signature]:
    return list(
        db.session.scalars(
            sa.select(Signature)
            .where(Signature.entity_type == entity_type, Signature.entity_id == entity_id)
            .order_by(Signature.signed_at)
        )
    )
