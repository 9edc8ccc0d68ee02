"""The dashboard each role lands on, and the health check for load balancers."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from flask_login import current_user

from ..extensions import db
from ..security import public, requires
from ..services.stock_queries import below_reorder_count_query, inventory_counts

bp = Blueprint("main", __name__)


@bp.route("/")
@requires("dashboard.view")
def dashboard():
    stock = None
    if current_user.can("lots.read") and current_user.role != "auditor":
        stock = db.session.execute(inventory_counts(expiring_days=30)).one()._asdict()
        stock["below_reorder"] = db.session.scalar(below_reorder_count_query())
    return render_template("main/dashboard.html", stock=stock)


@bp.route("/healthz")
@public
def healthz():
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "reachable"})
