"""API: the chain's sites and their storage locations."""

from flask import abort
from flask_login import current_user

from ..extensions import db
from ..models import Location, Site
from ..pagination import paginate_entities, per_page_arg
from ..services import site_reads, sites
from .schemas.sites import LocationCreateSchema, LocationSchema, SiteCreateSchema, SiteSchema
from .views import answer, json_body, load, page_answer, route


def _scope():
    """Those who manage sites see every one; others the sites they see."""
    return None if current_user.can("sites.manage") else sites.visible_site_ids(current_user)


def _visible(site_id: int) -> Site:
    site = db.session.get(Site, site_id)
    scope = _scope()
    if site is None or (scope is not None and site.id not in scope):
        abort(404)
    return site


def _site_answer(site: Site, status: int = 200):
    data = SiteSchema().dump(site)
    data["locations"] = LocationSchema(many=True).dump([node.location for node in site_reads.location_tree(site.id)])
    data["locations_count"] = len(data["locations"])
    return answer(data, status)


@route("/sites", permission="sites.read", summary="List sites, each with how many locations it has",
       response=SiteSchema, many=True)
def site_list():
    pagination = paginate_entities(site_reads.sites_query(_scope()), Site.id, per_page=per_page_arg())
    counts = site_reads.location_counts([site.id for site in pagination.items])
    items = [{**SiteSchema(exclude=("locations",)).dump(site), "locations_count": counts.get(site.id, 0)}
             for site in pagination.items]
    return answer(page_answer(items, pagination))


@route("/sites", "POST", permission="sites.manage", summary="Create a site, with its default location",
       body=SiteCreateSchema, response=SiteSchema, status=201, errors=(409,))
def site_create():
    data = load(SiteCreateSchema, json_body())
    site = sites.create_site(current_user, data["code"], data["name"], data["timezone"], data["address"])
    return _site_answer(site, 201)


@route("/sites/<int:site_id>", permission="sites.read", summary="One site with its locations",
       response=SiteSchema)
def site_detail(site_id: int):
    return _site_answer(_visible(site_id))


@route("/locations", "POST", permission="sites.manage",
       summary="Create a storage location at a site (inside another of the same site; code default: next LOC)",
       body=LocationCreateSchema, response=LocationSchema, status=201, errors=(404, 409))
def location_create():
    data = load(LocationCreateSchema, json_body())
    location = sites.create_location(current_user, data.pop("site_id"), data.pop("name"), data.pop("kind"), **data)
    return answer(LocationSchema().dump(location), 201)


@route("/locations/<int:location_id>", permission="sites.read", summary="One storage location",
       response=LocationSchema)
def location_detail(location_id: int):
    location = db.session.get(Location, location_id)
    if location is None:
        abort(404)
    _visible(location.site_id)
    return answer(LocationSchema().dump(location))
