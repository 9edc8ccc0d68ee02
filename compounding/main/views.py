"""The dashboard each role lands on, and the health check for load balancers."""

import sqlalchemy as sa
from flask import Blueprint, abort, jsonify, render_template, request, url_for
from flask_login import current_user

from ..charts import bar_chart
from ..extensions import db
from ..models import Site
from ..privacy import note_access
from ..queries.audit import recent_audit_events
from ..queries.ingredients import below_reorder_count_query
from ..queries.lots import inventory_counts
from ..queries.recalls import open_recall_count, open_recall_ids
from ..queries.scope import items_at_sites
from ..security import public, requires
from ..services import cold_chain, digests, export_jobs, mail, sites
from ..services import dashboard as figures
from ..services.duties import second_person_rules
from ..services.qualifications import DUE_SOON_DAYS
from ..services.signals import quality_signals
from ..site_scope import acting_site_id, current_scope

bp = Blueprint("main", __name__)

# What each role's dashboard shows, in order.
SECTIONS = {
    "pharmacist": ("stock", "batches", "quality", "charts"),
    "admin": ("stock", "batches", "quality", "charts"),
    "technician": ("stock", "batches", "work"),
    "practitioner": ("treatment_room",),
    "auditor": ("audit", "quality", "charts"),
}


def _charts(scope) -> list[dict]:
    charts = []
    labels, series = figures.expiry_by_week(site_ids=scope)
    charts.append({"title": "Lots in stock expiring per week (next 13 weeks)",
                   "svg": bar_chart("Lots in stock expiring per week", labels, series, unit=" lots")})
    labels, series = figures.activity_by_week(site_ids=scope)
    charts.append({"title": "Batches compounded and sessions per week (last 13 weeks)",
                   "svg": bar_chart("Batches and sessions per week", labels, series, stacked=False)})
    labels, series = figures.adverse_events_by_type(site_ids=scope)
    charts.append({"title": "Adverse events by type and severity (last 13 weeks)",
                   "svg": bar_chart("Adverse events by type and severity", labels, series, unit=" events")
                   if labels else None, "empty": "No adverse event recorded in the last 13 weeks."})
    labels, series, _ = figures.released_batches_by_bud(site_ids=scope)
    charts.append({"title": "Remaining volume of released batches, soonest beyond-use date first",
                   "svg": bar_chart("Remaining volume by hours to BUD", labels, series, unit=" mL")
                   if labels else None, "empty": "No released batch with volume left."})
    return charts


def _bench_readiness(context: dict, scope) -> None:
    """Qualifications and equipment that stop the bench now or soon, for those who act on them."""
    compounds = current_user.can("batches.compound") or current_user.can("batches.verify")
    if current_user.can("qualifications.read"):
        context["people_due"], context["people_due_total"] = figures.qualifications_due(site_ids=scope)
    if compounds:
        context["own_due"] = figures.own_qualifications_due(current_user)
    if compounds or current_user.can("equipment.manage"):
        context["equipment_due"] = figures.equipment_due(site_ids=scope)
    context.update(due_soon_days=DUE_SOON_DAYS, equipment_due_days=figures.EQUIPMENT_DUE_DAYS,
                   several_sites=scope is None or len(scope) > 1)


@bp.route("/")
@requires("dashboard.view")
def dashboard():
    sections = SECTIONS[current_user.role]
    scope = current_scope()  # the viewer's sites, narrowed by the switcher: every figure below counts there
    context: dict = {"sections": sections}
    if current_user.role in ("pharmacist", "auditor", "admin"):
        context["second_person_rules"] = second_person_rules()
    if "stock" in sections:
        context["stock"] = db.session.execute(inventory_counts(expiring_days=30, site_ids=scope)).one()._asdict()
        context["stock"]["below_reorder"] = db.session.scalar(below_reorder_count_query(site_ids=scope))
    if "batches" in sections:
        context["batch_counts"] = figures.batch_counts(site_ids=scope)
        context["awaiting_verification"] = figures.batches_awaiting_verification(site_ids=scope)
    if "quality" in sections:
        context["open_recalls"] = open_recall_count()
        signals = quality_signals(limit=20)
        mine = items_at_sites([(signal.kind, signal.id) for signal in signals], scope)
        context["signals"] = [signal for signal in signals if (signal.kind, signal.id) in mine]
        context["recall_targets"] = open_recall_ids()
    if "charts" in sections:
        context["charts"] = _charts(scope)
    if "treatment_room" in sections:
        context["sessions_today"] = figures.sessions_today(practitioner_id=current_user.id, site_ids=scope)
        if context["sessions_today"]:
            note_access("dashboard.sessions", target_type="treatment_sessions")
        context["usable_batches"] = figures.batches_usable_now(site_ids=scope)
    if current_user.can("readings.record"):  # those who stand by the fridges see what is missed or out
        context["missed_readings"] = cold_chain.missed_readings(scope)
        context["open_excursions"] = figures.open_excursions(site_ids=scope)
    _bench_readiness(context, scope)
    if "audit" in sections:
        context["recent_events"] = recent_audit_events(10)
    _digest_panel(context)
    return render_template("main/dashboard.html", **context)


def _digest_panel(context: dict) -> None:
    """Today's digest of the acting site, in counts (one statement), and for admins the mail that failed."""
    if current_user.can("digest.read"):
        site = db.session.get(Site, acting_site_id(current_user))
        context["digest_site"] = site
        context["digest_counts"] = digests.counts(site.id)
        context["digest_by_mail"] = digests.mail_configured()
    if current_user.can("mail.manage") and digests.mail_configured():
        context["mail_failed"] = digests.failed_count()
        context["mail_state"] = mail.sender_state()
    if current_user.can("jobs.watch"):
        context["exports_waiting"] = export_jobs.waiting_for_a_worker()


@bp.route("/digest")
@requires("digest.read")
def digest():
    """Today's digest of a site: `?site=CODE` (the e-mail's link: that site's, when the viewer may see it, else
    404), or the acting site. What its pharmacists get by e-mail each morning (or read here only, when no mail
    server is set)."""
    code = (request.args.get("site") or "").strip().upper()
    if code:
        site = db.session.scalar(sa.select(Site).where(Site.code == code))
        visible = sites.visible_site_ids(current_user)
        if site is None or (visible is not None and site.id not in visible):
            abort(404)
    else:
        site = db.session.get(Site, acting_site_id(current_user))
    return render_template("main/digest.html", digest=digests.digest_for(current_user, site), mail=False,
                           link=url_for, by_mail=digests.mail_configured())


@bp.route("/healthz")
@public
def healthz():
    db.session.execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok", "database": "reachable"})
