"""The data model: one module per concept, all imported here for the mapper and Alembic."""

from .access_log import PatientAccess
from .audit import AuditEvent, Signature
from .auth_failure import AuthFailure
from .batch import Batch, BatchComponent, BatchStatus
from .counter import CodeCounter
from .formula import Formula, FormulaComponent, FormulaStatus
from .history import StatusChange
from .hold import Hold
from .idempotency import IdempotencyKey
from .ingredient import Ingredient, IngredientGtin
from .ledger import StockMovement
from .lot import Lot, LotStatus
from .patient import Patient
from .recall import Recall, RecallContact, RecallStatus
from .treatment import AdverseEvent, SessionUse, TreatmentSession
from .user import ApiToken, User
from .user_session import UserSession

__all__ = [
    "RecallStatus",
    "LotStatus",
    "FormulaStatus",
    "BatchStatus",
    "AdverseEvent",
    "ApiToken",
    "AuditEvent",
    "AuthFailure",
    "Batch",
    "BatchComponent",
    "CodeCounter",
    "Formula",
    "FormulaComponent",
    "Hold",
    "IdempotencyKey",
    "Ingredient",
    "IngredientGtin",
    "Lot",
    "Patient",
    "PatientAccess",
    "Recall",
    "RecallContact",
    "SessionUse",
    "Signature",
    "StatusChange",
    "StockMovement",
    "TreatmentSession",
    "User",
    "UserSession",
]
