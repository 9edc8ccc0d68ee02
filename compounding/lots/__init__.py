"""Lot pages: receiving, quarantine and release, adjustments, the stock ledger."""
