"""Cold chain pages: a sensor's API token for one location (routes on views.bp).

A fridge sensor posts its readings with a token that opens `readings.record` for that location
and nothing else (security.scope_refusal). Those who manage the location's site make it here;
it is shown once, and the location's live sensor tokens are listed with a revoke button.
"""

import sqlalchemy as sa
from flask import abort, redirect, render_template, url_for
from flask_login import current_user

from ..auth.forms import TokenCreateForm
from ..extensions import db
from ..forms import ConfirmForm, submit
from ..models import ApiToken, Location, Site
from ..pages import revoke_token
from ..security import requires
from ..services import sites, users
from ..services.clock import utcnow
from .views import bp

SENSOR_SCOPE = "readings.record"


def _managed(location_id: int) -> Location:
    """A location whose site the caller manages (admins: every site); 404 for an unknown one."""
    location = db.session.get(Location, location_id)
    if location is None:
        abort(404)
    if current_user.role != "admin":
        sites.ensure_at_site(current_user, location.site_id, "manage its sensors")
    return location


def live_sensor_tokens(location_id: int) -> list[ApiToken]:
    """The location's sensor tokens that still answer, newest first (their users loaded with them)."""
    return list(db.session.scalars(
        sa.select(ApiToken).where(ApiToken.location_id == location_id, ApiToken.revoked_at.is_(None),
                                  ApiToken.expires_at > utcnow()).order_by(ApiToken.id.desc())))


def _page(location: Location, form: TokenCreateForm, new_token: str | None = None, status: int = 200):
    return render_template(
        "cold_chain/sensor_token.html", location=location, site=db.session.get(Site, location.site_id),
        form=form, new_token=new_token, tokens=live_sensor_tokens(location.id), confirm_form=ConfirmForm(),
        now=utcnow()), status


@bp.route("/cold-chain/locations/<int:location_id>/sensor-token", methods=["GET", "POST"])
@requires("sites.manage")
def sensor_token(location_id: int):
    location = _managed(location_id)
    form = TokenCreateForm()
    if not form.is_submitted():
        return _page(location, form)
    token = submit(form, lambda: users.create_token(current_user, current_user, form.name.data, days=form.days.data,
                                                    scope=SENSOR_SCOPE, location_id=location.id))
    if token is None:
        return _page(location, form, status=422)
    # Shown this once, on the answer to the post: only its hash is kept.
    return _page(location, TokenCreateForm(formdata=None), new_token=token)


@bp.route("/cold-chain/locations/<int:location_id>/sensor-token/<int:token_id>/revoke", methods=["POST"])
@requires("sites.manage")
def sensor_token_revoke(location_id: int, token_id: int):
    location = _managed(location_id)
    token = db.session.get(ApiToken, token_id)
    if token is None or token.location_id != location.id:
        abort(404)
    revoke_token(token_id, token.user,
                 lambda row: f"Sensor token {row.name or row.prefix} revoked: it no longer records readings.")
    return redirect(url_for("cold_chain.sensor_token", location_id=location.id))
