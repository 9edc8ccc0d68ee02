"""Which sites a request looks at: the viewer's sites, narrowed by the site switcher.

Pages and API routes pass `current_scope()` to the queries (`site_ids`): None means every
site (an auditor or a chain-wide account with no site chosen). The switcher keeps its choice
in the signed session cookie (`SITE_KEY`); a choice the user may no longer see is ignored.
An API call may name `site_id` in its arguments instead.
"""

from flask import has_request_context, request, session
from flask_login import current_user

from .queries.scope import in_scope
from .services import sites
from .services.errors import NotFound

SITE_KEY = "site_id"
# How a page names a record it will not show.
_NAMES = {"lot": "lot", "batch": "batch", "vial": "vial", "session": "treatment session"}


def chosen_site_id() -> int | None:
    """The site picked in the switcher (pages) or asked for with `?site_id=` (API), if any."""
    if not has_request_context():
        return None
    raw = request.args.get("site_id") if request.path.startswith("/api/") else session.get(SITE_KEY)
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def current_scope(user=None) -> frozenset[int] | None:
    """The site ids the viewer sees now: their sites (or all), narrowed to the chosen one when they may see it."""
    user = user if user is not None else (current_user if current_user.is_authenticated else None)
    visible = sites.visible_site_ids(user)
    chosen = chosen_site_id()
    if chosen is not None and (visible is None or chosen in visible):
        return frozenset({chosen})
    return visible


def acting_site_id(user=None) -> int | None:
    """The site where the viewer acts (receives, compounds, treats): the chosen one, else their first."""
    user = user if user is not None else current_user
    chosen = chosen_site_id()
    if chosen is not None and sites.may_act_at(user, chosen):
        return chosen
    return sites.acting_site_id(user)


def ensure_visible(kind: str, item_id: int, user=None) -> None:
    """404, as for a record that does not exist, when a lot, batch, vial or session is outside every site the
    viewer may see (`sites.visible_site_ids`, whatever the switcher shows now): the one read check of record
    pages and API detail routes. Trace and recall read the chain by design and do not ask."""
    user = user if user is not None else (current_user if current_user.is_authenticated else None)
    if not in_scope(kind, item_id, sites.visible_site_ids(user)):
        raise NotFound(f"There is no such {_NAMES[kind]}.")
