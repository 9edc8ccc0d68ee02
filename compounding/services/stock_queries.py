"""Read-side queries for stock: lists, filters and dashboard counts, each one statement."""

from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..models import Ingredient, Lot, LotStatus
from .expiry import expired_clause, last_usable_day

LOT_SORTS = {
    "expiry": (Lot.expires_on.asc(), Lot.id.asc()),
    "-expiry": (Lot.expires_on.desc(), Lot.id.desc()),
    "received": (Lot.received_at.asc(), Lot.id.asc()),
    "-received": (Lot.received_at.desc(), Lot.id.desc()),
    "code": (Lot.code.asc(),),
}

# Lots still counted as stock: awaiting release or released (held, finished and recalled ones are not).
IN_STOCK = (LotStatus.QUARANTINE, LotStatus.RELEASED)


@dataclass
class LotFilters:
    ingredient_id: int | None = None
    status: str = ""
    expiring_within_days: int | None = None
    expired_in_stock: bool = False
    q: str = ""
    sort: str = "expiry"


def usable_stock_subquery():
    """Per ingredient: stock on hand in released, unexpired lots, and the nearest expiry."""
    return (
        sa.select(
            Lot.ingredient_id,
            sa.func.sum(Lot.remaining).label("on_hand"),
            sa.func.min(Lot.expires_on).label("nearest_expiry"),
            sa.func.count(Lot.id).label("lot_count"),
        )
        .where(Lot.status == LotStatus.RELEASED, Lot.remaining > 0, sa.not_(expired_clause(Lot.expires_on)))
        .group_by(Lot.ingredient_id)
        .subquery()
    )


def ingredient_overview_query(search: str = "", below_reorder: bool = False,
                              include_inactive: bool = False):
    """Ingredients with on-hand stock, nearest expiry and a below-reorder flag."""
    stock = usable_stock_subquery()
    on_hand = sa.func.coalesce(stock.c.on_hand, 0)
    query = (
        sa.select(Ingredient, on_hand.label("on_hand"), stock.c.nearest_expiry,
                  (on_hand < Ingredient.reorder_level).label("below_reorder"))
        .outerjoin(stock, stock.c.ingredient_id == Ingredient.id)
        .order_by(Ingredient.name)
    )
    if search:
        query = query.where(Ingredient.name.ilike(f"%{_escape_like(search)}%", escape="\\"))
    if not include_inactive:
        query = query.where(Ingredient.active.is_(True))
    if below_reorder:
        query = query.where(on_hand < Ingredient.reorder_level)
    return query


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def lot_list_query(filters: LotFilters):
    """The lot list with its filters; the page's ingredients come in one more statement.

    Not joined: on a deep page a join for every skipped row would dominate the offset.
    """
    query = sa.select(Lot).options(selectinload(Lot.ingredient))
    if filters.ingredient_id:
        query = query.where(Lot.ingredient_id == filters.ingredient_id)
    if filters.status:
        query = query.where(Lot.status == filters.status)
    if filters.expiring_within_days is not None:
        today = last_usable_day()
        query = query.where(
            Lot.expires_on >= today,
            Lot.expires_on <= today + timedelta(days=filters.expiring_within_days),
            Lot.status.in_(IN_STOCK),
            Lot.remaining > 0,
        )
    if filters.expired_in_stock:
        query = query.where(expired_clause(Lot.expires_on), Lot.remaining > 0,
                            Lot.status.in_(IN_STOCK))
    if filters.q:
        pattern = f"%{_escape_like(filters.q.strip())}%"
        query = query.where(sa.or_(Lot.code.ilike(pattern, escape="\\"),
                                   Lot.supplier_lot_number.ilike(pattern, escape="\\"),
                                   Lot.supplier.ilike(pattern, escape="\\")))
    return query.order_by(*LOT_SORTS.get(filters.sort, LOT_SORTS["expiry"]))


def inventory_counts(expiring_days: int = 30):
    """The dashboard's stock tiles, in one statement.

    Three counts that each stay on an index (status or expiry date: lots in quarantine or
    released are a small share of all lots ever received), rather than one pass over every lot.
    """
    today = last_usable_day()

    def count(*where):
        return sa.select(sa.func.count()).select_from(Lot).where(*where).scalar_subquery()

    in_stock = (Lot.status.in_(IN_STOCK), Lot.remaining > 0)
    return sa.select(
        count(Lot.status == LotStatus.QUARANTINE).label("awaiting_release"),
        count(*in_stock, Lot.expires_on >= today, Lot.expires_on <= today + timedelta(days=expiring_days))
        .label("expiring_soon"),
        count(*in_stock, Lot.expires_on < today).label("expired_in_stock"),
    )


def below_reorder_count_query():
    stock = usable_stock_subquery()
    return (
        sa.select(sa.func.count(Ingredient.id))
        .outerjoin(stock, stock.c.ingredient_id == Ingredient.id)
        .where(Ingredient.active.is_(True),
               sa.func.coalesce(stock.c.on_hand, 0) < Ingredient.reorder_level)
    )


def expiry_today() -> date:
    return last_usable_day()
