"""API: cold_chain_reports."""
