"""The JSON API under /api/v1: resources register their routes on the one blueprint."""

from . import ingredients  # noqa: F401  (registers routes)
from .views import bp

__all__ = ["bp"]
