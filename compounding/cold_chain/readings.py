"""Cold chain pages: readings (routes on views.bp)."""
