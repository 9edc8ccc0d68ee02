"""The real application plus bench-only routes: the cheapest requests that touch the database."""

import sqlalchemy as sa
from flask import Flask, jsonify, request

from compounding import create_app
from compounding.extensions import db
from compounding.models import Batch, Vial
from compounding.security import public


@public
def minimal():
    """One indexed lookup of a batch by code, no auth, no template: the floor for the scan API."""
    row = db.session.execute(sa.select(Batch.id, Batch.code, Batch.status)
                             .where(Batch.code == request.args.get("code", ""))).first()
    return jsonify({"id": row.id, "code": row.code, "status": row.status} if row else {})


@public
def minimal_vial():
    """One indexed lookup of a vial by code, no auth, no template: the floor for scanning a vial."""
    row = db.session.execute(sa.select(Vial.id, Vial.code, Vial.status)
                             .where(Vial.code == request.args.get("code", ""))).first()
    return jsonify({"id": row.id, "code": row.code, "status": row.status} if row else {})


def make_app() -> Flask:
    """The app exactly as `wsgi.py` builds it (settings from the environment) plus /bench/minimal."""
    app = create_app()
    app.add_url_rule("/bench/minimal", endpoint="bench_minimal", view_func=minimal)
    app.add_url_rule("/bench/minimal-vial", endpoint="bench_minimal_vial", view_func=minimal_vial)
    return app
