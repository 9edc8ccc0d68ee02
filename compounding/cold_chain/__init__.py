"""The cold chain: fridge logs, logger files, excursions and month reports (pages)."""
