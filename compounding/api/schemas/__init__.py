"""Marshmallow schemas: what the API accepts and answers (and what OpenAPI documents), one module per area."""

from .audit import (  # noqa: F401
    AuditEventQuerySchema,
    AuditEventSchema,
)
from .batches import (  # noqa: F401
    BatchAllocationSchema,
    BatchComponentSchema,
    BatchCompoundSchema,
    BatchDiscardSchema,
    BatchFormulaSchema,
    BatchQuerySchema,
    BatchRejectSchema,
    BatchSchema,
    BatchVerifySchema,
)
from .common import (  # noqa: F401
    RECORD_ID,
    Day,
    ErrorSchema,
    ExpiryDate,
    HoldReleaseSchema,
    HoldSchema,
    Moment,
    Quantity,
)
from .formulas import (  # noqa: F401
    FormulaApproveSchema,
    FormulaComponentSchema,
    FormulaCreateSchema,
    FormulaQuerySchema,
    FormulaRetireSchema,
    FormulaSchema,
    FormulaUpdateSchema,
)
from .ingredients import (  # noqa: F401
    IngredientQuerySchema,
    IngredientSchema,
    IngredientUpdateSchema,
)
from .lots import (  # noqa: F401
    LotAdjustSchema,
    LotQuerySchema,
    LotReceiveSchema,
    LotRejectSchema,
    LotReleaseSchema,
    LotSchema,
)
from .recalls import (  # noqa: F401
    BatchTraceSchema,
    LotTraceSchema,
    QualitySignalSchema,
    RecallCloseSchema,
    RecallContactAnswerSchema,
    RecallContactCreateSchema,
    RecallContactSchema,
    RecallOpenSchema,
    RecallPatientRowSchema,
    RecallProgressSchema,
    RecallQuerySchema,
    RecallSchema,
    RecallSummarySchema,
    RecallTargetSchema,
    ScopePageSchema,
    SignatureSchema,
    TraceBatchRowSchema,
    TraceBatchSchema,
    TraceCountsSchema,
    TraceLotSchema,
    TracePatientRowSchema,
    TraceSessionRowSchema,
    TraceUpstreamLotSchema,
)
from .scan import (  # noqa: F401
    ScanLotRefSchema,
    ScanQuerySchema,
    ScanResultSchema,
)
from .treatments import (  # noqa: F401
    AdverseEventQuerySchema,
    AdverseEventSchema,
    PatientQuerySchema,
    PatientSchema,
    PatientUpdateSchema,
    SessionUseInSchema,
    SessionUseSchema,
    TreatmentSessionCorrectSchema,
    TreatmentSessionCreateSchema,
    TreatmentSessionQuerySchema,
    TreatmentSessionSchema,
    TreatmentSessionVoidSchema,
)
