"""`gunicorn bench.wsgi:app`: the production app with the bench-only minimal route added."""

from .app import make_app

app = make_app()
