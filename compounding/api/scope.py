"""The sites an API list reads: the caller's scope, narrowed by `?site_id=` (a site they may not see: 403)."""

from flask import request
from flask_login import current_user

from ..queries.common import record_id
from ..services import sites
from ..services.errors import InvalidInput, NotAllowed
from ..site_scope import current_scope


def list_scope() -> frozenset[int] | None:
    """`site_scope.current_scope()`, except that a `site_id` the caller asks for and may not see is refused
    rather than ignored: an API client must not mistake the whole of its scope for one site's list."""
    raw = request.args.get("site_id")
    if raw in (None, ""):
        return current_scope()
    try:
        site_id = record_id(raw)
    except ValueError:
        raise InvalidInput("site_id is a site's id, a whole number.", field="site_id") from None
    visible = sites.visible_site_ids(current_user)
    if visible is not None and site_id not in visible:
        raise NotAllowed(f"You do not belong to site {site_id}: its stock is not yours to see.", field="site_id")
    if visible is None:
        sites.get_site(site_id)  # 404 for a site that does not exist
    return frozenset({site_id})
