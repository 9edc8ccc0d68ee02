"""The dashboard each role lands on, and the health check for load balancers."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from flask_login import current_user

from ..extensions import db
from ..models import Recall
from ..recalls.records import open_recall_ids
from ..security import public, requires
from ..services.stock_queries import below_reorder_count_query, inventory_counts
from ..services.trace import quality_signals

bp = Blueprint("main", __name__)


@bp.route("/")
@requires("dashboard.view")
def dashboard():
    stock = None
    if current_user.can("lots.read") and current_user.role != "auditor":
        stock = db.session.execute(inventory_counts(expiring_days=30)).one()._asdict()
        stock["below_reorder"] = db.session.scalar(below_reorder_count_query())
    open_recalls = db.session.scalar(sa.select(sa.func.count(Recall.id)).where(Recall.status == "open"))
    signals = recall_targets = None
    # Pharmacists act on quality signals; admins and auditors see them read-only.
    if current_user.role in ("pharmacist", "admin", "auditor"):
        signals, recall_targets = quality_signals(limit=20), open_recall_ids()
    return render_template("main/dashboard.html", stock=stock, open_recalls=open_recalls, signals=signals,
                           recall_targets=recall_targets)


@bp.route("/healthz")
@public
def healthz():
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "reachable"})
