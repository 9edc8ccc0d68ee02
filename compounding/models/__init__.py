"""The data model: one module per concept, all imported here for the mapper and Alembic."""

from .access_log import PatientAccess
from .audit import AuditEvent, Signature
from .auth_failure import AuthFailure
from .batch import BATCH_TRANSITIONS, Batch, BatchComponent, BatchStatus, BatchTest
from .cold_chain import Excursion, ExcursionItem, ReadingImport, StockMove, TemperatureReading
from .counter import CodeCounter
from .document import Document
from .equipment import BatchEquipment, Calibration, Equipment
from .exposure import ExposureCount
from .formula import FORMULA_TRANSITIONS, Formula, FormulaComponent, FormulaStatus
from .history import StatusChange
from .hold import Hold
from .idempotency import IdempotencyKey
from .ingredient import Ingredient, IngredientGtin
from .job import ExportJob, MailMessage
from .ledger import StockMovement
from .lot import LOT_TRANSITIONS, Lot, LotStatus
from .patient import Patient
from .people import Qualification, QualificationKind
from .recall import RECALL_TRANSITIONS, Recall, RecallContact, RecallStatus
from .site import MAIN_SITE, Location, Site, UserSite
from .transfer import TRANSFER_TRANSITIONS, Transfer, TransferLine, TransferStatus
from .treatment import AdverseEvent, SessionUse, TreatmentSession
from .user import ApiToken, User
from .user_session import UserSession
from .vial import VIAL_TRANSITIONS, Vial, VialStatus

# Every status change of every kind of item, by entity type and action (see _common.Transition).
STATUS_TRANSITIONS = {"lot": LOT_TRANSITIONS, "batch": BATCH_TRANSITIONS, "formula": FORMULA_TRANSITIONS,
                      "recall": RECALL_TRANSITIONS, "vial": VIAL_TRANSITIONS,
                      "transfer": TRANSFER_TRANSITIONS}

__all__ = [
    "STATUS_TRANSITIONS",
    "RecallStatus",
    "LotStatus",
    "FormulaStatus",
    "BatchStatus",
    "AdverseEvent",
    "ApiToken",
    "AuditEvent",
    "AuthFailure",
    "BatchEquipment",
    "Calibration",
    "Document",
    "Equipment",
    "Qualification",
    "QualificationKind",
    "Batch",
    "BatchComponent",
    "BatchTest",
    "CodeCounter",
    "Excursion",
    "ExcursionItem",
    "ReadingImport",
    "StockMove",
    "TemperatureReading",
    "ExposureCount",
    "ExportJob",
    "MailMessage",
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
    "Vial",
    "MAIN_SITE",
    "Location",
    "Site",
    "UserSite",
    "Transfer",
    "TransferLine",
    "TransferStatus",
    "VialStatus",
]
