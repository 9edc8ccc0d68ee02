"""Ingredients with their stock on hand: the list, one ingredient, the below-reorder count."""

from dataclasses import dataclass, field

import sqlalchemy as sa

from ..extensions import db
from ..models import Ingredient, Lot, LotStatus
from ..services.expiry import expired_clause
from .common import contains, search_arg
from .scope import SiteIds, at_sites


@dataclass
class IngredientFilters:
    q: str = ""
    below_reorder: bool = False
    include_inactive: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "IngredientFilters":
        """The list page's query string (`inactive=1`, `below_reorder=1`)."""
        errors: dict[str, str] = {}
        return cls(q=search_arg(args, errors), below_reorder=args.get("below_reorder") == "1",
                   include_inactive=args.get("inactive") == "1", errors=errors)


def usable_stock_subquery(*, site_ids: SiteIds):
    """Per ingredient: stock on hand in released, unexpired lots at the sites in scope, and the nearest expiry."""
    return (
        sa.select(
            Lot.ingredient_id,
            sa.func.sum(Lot.remaining).label("on_hand"),
            sa.func.min(Lot.expires_on).label("nearest_expiry"),
            sa.func.count(Lot.id).label("lot_count"),
        )
        .where(Lot.status == LotStatus.RELEASED, Lot.remaining > 0, sa.not_(expired_clause(Lot.expires_on)),
               at_sites(Lot.site_id, site_ids))
        .group_by(Lot.ingredient_id)
        .subquery()
    )


def ingredient_overview_query(filters: IngredientFilters | None = None, *, site_ids: SiteIds):
    """Ingredients (the chain's) with the on-hand stock, nearest expiry and below-reorder flag of the sites in
    scope (all of them when no filters); the reorder level is compared with the stock in scope."""
    filters = filters or IngredientFilters(include_inactive=True)
    stock = usable_stock_subquery(site_ids=site_ids)
    on_hand = sa.func.coalesce(stock.c.on_hand, 0)
    query = (
        sa.select(Ingredient, on_hand.label("on_hand"), stock.c.nearest_expiry,
                  (on_hand < Ingredient.reorder_level).label("below_reorder"))
        .outerjoin(stock, stock.c.ingredient_id == Ingredient.id)
        .order_by(Ingredient.name)
    )
    if filters.q:
        query = query.where(Ingredient.name.ilike(contains(filters.q), escape="\\"))
    if not filters.include_inactive:
        query = query.where(Ingredient.active.is_(True))
    if filters.below_reorder:
        query = query.where(on_hand < Ingredient.reorder_level)
    return query


def ingredient_row_query(ingredient_id: int, *, site_ids: SiteIds):
    """One ingredient's row of the overview, inactive or not."""
    return ingredient_overview_query(site_ids=site_ids).where(Ingredient.id == ingredient_id)


def below_reorder_count_query(*, site_ids: SiteIds):
    """How many active ingredients have less usable stock at the sites in scope than their reorder level."""
    stock = usable_stock_subquery(site_ids=site_ids)
    return (
        sa.select(sa.func.count(Ingredient.id))
        .outerjoin(stock, stock.c.ingredient_id == Ingredient.id)
        .where(Ingredient.active.is_(True),
               sa.func.coalesce(stock.c.on_hand, 0) < Ingredient.reorder_level)
    )


def ingredients_to_choose(keep_ids=()) -> list[Ingredient]:
    """Active ingredients by name, with any inactive one of `keep_ids` (a draft already lists it)."""
    return db.session.scalars(
        sa.select(Ingredient).where(sa.or_(Ingredient.active.is_(True), Ingredient.id.in_(keep_ids)))
        .order_by(Ingredient.name)).all()


def ingredient_names() -> list:
    """(id, name) of every ingredient, active or not, by name: a list filter's choices."""
    return db.session.execute(sa.select(Ingredient.id, Ingredient.name).order_by(Ingredient.name)).all()


def all_ingredients() -> list[Ingredient]:
    return db.session.scalars(sa.select(Ingredient).order_by(Ingredient.name)).all()
