"""API: cold_chain_files."""
