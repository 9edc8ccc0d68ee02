"""The scan station and the scanner set-up page."""
