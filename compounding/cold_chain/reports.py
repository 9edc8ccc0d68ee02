"""Cold chain pages: reports (routes on views.bp)."""
