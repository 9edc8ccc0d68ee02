"""Cold chain pages: files (routes on views.bp)."""
