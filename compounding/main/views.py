"""The dashboard each role lands on, and the health check for load balancers."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template

from ..extensions import db
from ..security import public, requires

bp = Blueprint("main", __name__)


@bp.route("/")
@requires("dashboard.view")
def dashboard():
    return render_template("main/dashboard.html")


@bp.route("/healthz")
@public
def healthz():
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "reachable"})
