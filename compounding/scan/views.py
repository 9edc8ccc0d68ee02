"""Scan station: one field a keyboard-wedge scanner fills; a large card says what it is."""

from flask import Blueprint, current_app, render_template, request, session, url_for
from markupsafe import Markup

from ..gs1 import GS, GS1Error, parse_gs1
from ..limits import SCAN_MAX
from ..security import requires
from ..services.clock import to_clinic, utcnow
from ..services.scan import in_use_until, resolve, visible
from ..site_scope import acting_site_id, current_scope

bp = Blueprint("scan", __name__, url_prefix="/scan")
RECENT_KEY = "recent_scans"
RECENT_MAX = 8


def _remember(result) -> list[dict]:
    """The last scans of this browser, kept in its signed session cookie (no server state).

    The cookie is signed, not encrypted: an unknown code (a patient's chart number or name typed
    in the wrong box) is remembered as unknown, never by its text.
    """
    shown = result.shown[:60] if result.kind != "unknown" else "not one of our codes"
    entry = {"shown": shown, "kind": result.kind, "usable": result.usable,
             "at": to_clinic(utcnow()).strftime("%H:%M:%S"),
             "code": (result.vial.code if result.vial else result.batch.code if result.batch
                      else result.lot.code if result.lot else result.location.code if result.location
                      else result.equipment.code if result.equipment else "")}
    recent = [entry, *session.get(RECENT_KEY, [])][:RECENT_MAX]
    session[RECENT_KEY] = recent
    return recent


@bp.route("/")
@requires("scan.use")
def station():
    raw = request.args.get("code")
    result = None
    if raw is not None and raw.strip(" \r\n"):
        result = resolve(raw[:SCAN_MAX], site_ids=current_scope(), acting_site_id=acting_site_id())
        recent = _remember(result)
    else:
        recent = session.get(RECENT_KEY, [])
    deadline = in_use_until(result.vial, result.batch) if result is not None and result.vial else None
    return render_template("scan/station.html", result=result, recent=recent, receive_url=_receive_url(result),
                           in_use_until=deadline)


def _receive_url(result) -> str | None:
    if result is None or result.kind != "gs1" or result.lot is not None:
        return None
    data = result.gs1
    args = {"gtin": data.gtin, "lot_number": data.lot_number,
            "expiry_date": data.expiry_date.isoformat() if data.expiry_date else None,
            "ingredient_id": result.ingredient.id if result.ingredient else None}
    return url_for("lots.lot_receive", **{k: v for k, v in args.items() if v})


@bp.route("/setup")
@requires("scan.use")
def setup():
    """Show exactly what a test scan delivered, and which separator setting would fit."""
    raw = request.args.get("test", "")[:SCAN_MAX]
    report = None
    if raw:
        configured = current_app.config.get("GS1_SEPARATOR", "")
        candidates = [c for c in "|~^#$@!" if c in raw]
        advice = []
        if GS in raw:
            advice.append("The GS separator arrives as-is: leave GS1_SEPARATOR empty.")
        elif candidates:
            advice.append(f"Your scanner seems to send {candidates[0]!r} for the GS separator: "
                          f"set GS1_SEPARATOR={candidates[0]}.")
        else:
            advice.append("No separator arrived. A GS1 code with a lot number followed by other data needs one: "
                          "configure the scanner to send GS (0x1D) or a printable substitute.")
        if raw.startswith("]"):
            advice.append(f"The scanner adds a symbology prefix ({raw[:3]!r}); it is understood and removed.")
        try:
            parsed = parse_gs1(raw, configured)
            outcome = f"Read with the current setting: {parsed.hri}"
        except GS1Error as exc:
            outcome = f"Not readable with the current setting: {exc}"
        report = {"visible": visible(raw), "length": len(raw), "advice": advice, "outcome": outcome,
                  "codes": " ".join(f"{ord(c):02X}" for c in raw[:120])}
    return render_template("scan/setup.html", report=report, configured=visible(
        current_app.config.get("GS1_SEPARATOR", "")) or Markup("<em>empty</em>"))
