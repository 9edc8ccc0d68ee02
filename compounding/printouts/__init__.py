"""Printable labels: batch (vial) and lot (container) labels at label size or on an A4 sheet."""
