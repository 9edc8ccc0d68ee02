"""Template filters and globals: clinic time, quantities, status badges, permissions."""

from datetime import date, datetime
from decimal import Decimal

from flask import Flask, current_app, request, url_for
from flask_login import current_user
from markupsafe import Markup, escape

from . import site_scope
from .permissions import ROLE_LABELS
from .services import attempts, expiry, site_reads
from .services.bud import last_usable_minute
from .services.clock import to_clinic

STATUS_STYLES = {
    "quarantine": "warning", "released": "success", "rejected": "danger", "recalled": "danger",
    "depleted": "secondary", "on_hold": "danger", "prepared": "info", "awaiting_tests": "warning",
    "discarded": "secondary", "draft": "secondary",
    "approved": "success", "retired": "secondary", "open": "danger", "closed": "secondary",
    "expired": "danger", "active": "success", "inactive": "secondary",
}


def use_by(beyond_use_at: datetime | None, with_zone: bool = True) -> str:
    """A beyond-use instant as "Use by" reads everywhere (label, pages, workbook): its last usable minute."""
    return clinic_datetime(last_usable_minute(beyond_use_at), with_zone) if beyond_use_at else ""


def clinic_datetime(value: datetime | None, with_zone: bool = True) -> str:
    if value is None:
        return ""
    local = to_clinic(value)
    text = local.strftime("%Y-%m-%d %H:%M")
    return f"{text} {local.tzname()}" if with_zone else text


def clinic_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = to_clinic(value).date()
    return value.isoformat()


def quantity(value: Decimal | None) -> str:
    """Show a Decimal without float noise or trailing zeros (12.500 -> 12.5)."""
    if value is None:
        return ""
    value = Decimal(value)
    text = format(value.quantize(Decimal("0.001")), "f").rstrip("0").rstrip(".")
    return text or "0"


# A vial's statuses read differently: an open vial is in use (a recall's "open" is an alarm).
VIAL_STATUS_STYLES = {**STATUS_STYLES, "sealed": "success", "open": "info", "spent": "secondary",
                      "sampled": "secondary", "in_transit": "warning"}


def vial_badge(status: str) -> Markup:
    return status_badge(status, VIAL_STATUS_STYLES)


def status_badge(status: str, styles: dict | None = None) -> Markup:
    style = (styles or STATUS_STYLES).get(status, "secondary")
    text_class = " text-dark" if style in ("warning", "info") else ""
    label = escape(status.replace("_", " "))
    return Markup(f'<span class="badge text-bg-{style}{text_class}">{label}</span>')


def humanize(value: str | None) -> str:
    return (value or "").replace("_", " ")


def url_with(**changes) -> str:
    """The current page's URL with some query arguments changed (filters stay in the URL)."""
    args = request.args.to_dict()
    args.update({k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        args.pop(key, None)
    return url_for(request.endpoint, **(request.view_args or {}), **args)


# endpoint, label, permission; items whose area is not built yet are left out.
NAV_ITEMS = [
    ("main.dashboard", "Dashboard", "dashboard.view"),
    ("scan.station", "Scan", "scan.use"),
    ("ingredients.ingredient_list", "Ingredients", "ingredients.read"),
    ("lots.lot_list", "Lots", "lots.read"),
    ("formulas.formula_list", "Formulas", "formulas.read"),
    ("batches.batch_list", "Batches", "batches.read"),
    ("treatments.patient_list", "Patients", "patients.read"),
    ("recalls.recall_list", "Recalls", "recalls.read"),
    ("exports.index", "Exports", "exports.audit"),
    ("admin.audit_trail", "Audit trail", "audit.read"),
    ("admin.user_list", "Users", "users.manage"),
    ("sites.site_list", "Sites", "sites.read"),
]


def place(location_id: int | None) -> dict | None:
    """Where a lot, batch or vial is: {"location": {id, code, name}, "site": {id, code}}."""
    return site_reads.places([location_id]).get(location_id)


def site_switcher() -> dict | None:
    """The header's site choice, for a viewer with several sites: the one chosen (None: all) and the list."""
    if not current_user.is_authenticated:
        return None
    choosable = site_reads.switchable_sites(current_user)
    if len(choosable) < 2:
        return None
    chosen = site_scope.chosen_site_id()
    return {"chosen": next((row for row in choosable if row.id == chosen), None), "sites": choosable}


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("HeadlessChrome/", "Chrome"),
             ("Chrome/", "Chrome"), ("CriOS/", "Chrome"), ("Version/", "Safari"))
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def browser_name(user_agent: str | None) -> str:
    """'Chrome 156 on Linux' from a User-Agent header: enough to tell one's own devices apart."""
    agent = user_agent or ""
    browser = next((f"{name} {agent.split(marker, 1)[1].split('.', 1)[0]}" for marker, name in _BROWSERS
                    if marker in agent), "")
    system = next((name for marker, name in _SYSTEMS if marker in agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (agent[:40] if agent else "unknown")


def init_app(app: Flask) -> None:
    app.add_template_filter(browser_name)
    app.add_template_filter(clinic_datetime)
    app.add_template_filter(use_by)
    app.add_template_filter(clinic_date)
    app.add_template_filter(quantity)
    app.add_template_filter(status_badge)
    app.add_template_filter(vial_badge)
    app.add_template_filter(humanize)
    app.add_template_filter(expiry.is_expired, "lot_expired")
    app.add_template_filter(expiry.days_left, "days_left")
    app.add_template_global(url_with)
    app.add_template_global(site_switcher)
    app.add_template_global(place)
    app.add_template_global(attempts.blocked_until, "passwords_paused_until")

    @app.context_processor
    def _globals():
        def can(permission: str) -> bool:
            return current_user.is_authenticated and current_user.can(permission)

        return {
            "clinic_name": current_app.config["CLINIC_NAME"],
            "clinic_timezone": current_app.config["CLINIC_TIMEZONE"],
            "can": can,
            "role_labels": ROLE_LABELS,
            "nav_items": [item for item in NAV_ITEMS if item[0] in current_app.view_functions],
        }
