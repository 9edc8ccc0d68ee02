"""The JSON API under /api/v1: resources register their routes on the one blueprint."""

from . import (  # noqa: F401  (each module registers its routes)
    audit,
    batches,
    cold_chain,
    cold_chain_files,
    cold_chain_reports,
    documents,
    equipment,
    exports,
    formulas,
    ingredients,
    labels,
    lots,
    qualifications,
    recalls,
    scan,
    sites,
    tokens,
    transfers,
    treatments,
    vials,
)
from .views import bp

__all__ = ["bp"]
