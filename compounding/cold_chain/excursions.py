"""Cold chain pages: excursions (routes on views.bp)."""
