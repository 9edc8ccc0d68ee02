"""API: cold_chain."""
