"""Lots: the list and its filters, one lot's page, the dashboard's stock tiles."""

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Batch, BatchComponent, Lot, LotStatus, StockMovement, User
from ..models.lot import LOT_STATUSES
from ..services.expiry import expired_clause, last_usable_day
from .audit import audit_history
from .common import contains, record_id, search_arg
from .scope import SiteIds, at_sites

LOT_SORTS = {
    "expiry": (Lot.expires_on.asc(), Lot.id.asc()),
    "-expiry": (Lot.expires_on.desc(), Lot.id.desc()),
    "received": (Lot.received_at.asc(), Lot.id.asc()),
    "-received": (Lot.received_at.desc(), Lot.id.desc()),
    # Codes grow past their six digits (L1000000 after L999999): shorter codes first.
    "code": (sa.func.length(Lot.code).asc(), Lot.code.asc()),
}
# Lots that still hold stock someone may use, once released.
IN_STOCK = (LotStatus.QUARANTINE, LotStatus.RELEASED)
# The longest "expiring within" window a list takes: ten years.
MAX_EXPIRY_WINDOW_DAYS = 3650


@dataclass
class LotFilters:
    ingredient_id: int | None = None
    status: str = ""
    expiring_within_days: int | None = None
    expired_in_stock: bool = False
    q: str = ""
    sort: str = "expiry"
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "LotFilters":
        """The list page's and the export's query string: an unknown status or sort is no filter."""
        errors: dict[str, str] = {}
        days = args.get("expiring_within_days", type=int)
        return cls(
            ingredient_id=args.get("ingredient_id", type=record_id),
            status=args.get("status", "") if args.get("status") in LOT_STATUSES else "",
            expiring_within_days=min(max(days, 0), MAX_EXPIRY_WINDOW_DAYS) if days is not None else None,
            expired_in_stock=args.get("expired_in_stock") == "1",
            q=search_arg(args, errors),
            sort=args.get("sort", "expiry") if args.get("sort") in LOT_SORTS else "expiry",
            errors=errors,
        )


def lot_list_query(filters: LotFilters, *, site_ids: SiteIds):
    """The lot list with its filters, at the sites in scope; the page's ingredients come in one more statement.

    Not joined: on a deep page a join for every skipped row would dominate the offset. One site
    reads ix_lots_site_expires_on_id in the list's own order.
    """
    query = sa.select(Lot).options(selectinload(Lot.ingredient)).where(at_sites(Lot.site_id, site_ids))
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
        query = query.where(expired_clause(Lot.expires_on), Lot.remaining > 0, Lot.status.in_(IN_STOCK))
    if filters.q:
        pattern = contains(filters.q.strip())
        query = query.where(sa.or_(Lot.code.ilike(pattern, escape="\\"),
                                   Lot.supplier_lot_number.ilike(pattern, escape="\\"),
                                   Lot.supplier.ilike(pattern, escape="\\")))
    return query.order_by(*LOT_SORTS.get(filters.sort, LOT_SORTS["expiry"]))


@dataclass
class LotRecord:
    """What a lot's page shows beside its forms."""

    lot: Lot
    movements: list
    history: list
    used_in: list


def lot_record(lot_id: int) -> LotRecord | None:
    """A lot with its ingredient and signers, its last ledger rows, audit rows and batches; None if unknown."""
    lot = db.session.scalar(
        sa.select(Lot).where(Lot.id == lot_id).options(
            selectinload(Lot.ingredient), selectinload(Lot.received_by), selectinload(Lot.released_by)))
    if lot is None:
        return None
    movements = db.session.execute(
        sa.select(StockMovement, User.display_name)
        .join(User, User.id == StockMovement.actor_id)
        .where(StockMovement.lot_id == lot.id).order_by(StockMovement.id.desc()).limit(200)).all()
    used_in = db.session.execute(
        sa.select(BatchComponent, Batch.code, Batch.status, Batch.compounded_at)
        .join(Batch, Batch.id == BatchComponent.batch_id)
        .where(BatchComponent.lot_id == lot.id).order_by(Batch.compounded_at.desc()).limit(200)).all()
    return LotRecord(lot=lot, movements=movements, history=audit_history("lot", lot.id), used_in=used_in)


def inventory_counts(expiring_days: int = 30, *, site_ids: SiteIds):
    """The dashboard's stock tiles at the sites in scope, in one statement.

    Three counts that each stay on an index (status or expiry date: lots in quarantine or
    released are a small share of all lots ever received), rather than one pass over every lot.
    """
    today = last_usable_day()

    def count(*where):
        return (sa.select(sa.func.count()).select_from(Lot).where(at_sites(Lot.site_id, site_ids), *where)
                .scalar_subquery())

    in_stock = (Lot.status.in_(IN_STOCK), Lot.remaining > 0)
    return sa.select(
        count(Lot.status == LotStatus.QUARANTINE).label("awaiting_release"),
        count(*in_stock, Lot.expires_on >= today, Lot.expires_on <= today + timedelta(days=expiring_days))
        .label("expiring_soon"),
        count(*in_stock, Lot.expires_on < today).label("expired_in_stock"),
    )
