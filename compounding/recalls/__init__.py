"""Trace, recall and quality-signal pages: from a scanned code to every patient it reached."""
