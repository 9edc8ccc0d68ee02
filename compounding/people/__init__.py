"""Qualified people: pages."""
