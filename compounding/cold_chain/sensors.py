"""Cold chain pages: sensors (routes on views.bp)."""
