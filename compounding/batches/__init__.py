"""Batch pages: compounding at the bench, verification, the batch record."""
