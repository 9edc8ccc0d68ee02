"""Pagination of multi-column selects (rows, not just the first entity)."""

import sqlalchemy as sa
from flask import flash, request
from flask_sqlalchemy.pagination import SelectPagination

from .extensions import db
from .limits import PER_PAGE_DEFAULT, PER_PAGE_MAX

# Far beyond any list, and small enough that (page - 1) * per_page stays a database integer.
MAX_PAGE = 1_000_000


def page_arg() -> int:
    """The `page` query argument: 1 when missing or not a number, never past MAX_PAGE."""
    return min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)


def per_page_arg() -> int:
    """The `per_page` query argument, within 1..PER_PAGE_MAX; PER_PAGE_DEFAULT when missing or not a number."""
    return min(max(request.args.get("per_page", PER_PAGE_DEFAULT, type=int) or PER_PAGE_DEFAULT, 1), PER_PAGE_MAX)


def filter_status(errors: dict[str, str]) -> int:
    """Flash what a list page could not read in its filters (each one is left out): 422 if anything, else 200."""
    for message in errors.values():
        flash(message, "danger")
    return 422 if errors else 200


class RowPagination(SelectPagination):
    """Like db.paginate, but items are full rows: (Ingredient, on_hand, nearest_expiry, ...).

    Given `keys` (the listed table's ids under the same filters and order, without the joins
    and computed columns), the count and the page's offset run on it alone and then only the
    page's rows are loaded: on a large list a deep page costs about what the first one does.
    """

    def _query_items(self) -> list:
        select, keys, session = self._query_args["select"], self._query_args.get("keys"), self._query_args["session"]
        if keys is None:
            return list(session.execute(select.limit(self.per_page).offset(self._query_offset)).all())
        page = list(session.scalars(keys.limit(self.per_page).offset(self._query_offset)))
        return list(session.execute(select.where(keys.selected_columns[0].in_(page))).all()) if page else []

    def _query_count(self) -> int:
        keys = self._query_args.get("keys")
        if keys is None:
            return super()._query_count()
        counted = sa.select(sa.func.count()).select_from(keys.order_by(None).subquery())
        return self._query_args["session"].execute(counted).scalar()


class EntityPagination(RowPagination):
    """RowPagination for a select of one entity (`select(Lot)`): the items are the objects themselves."""

    def _query_items(self) -> list:
        select, keys, session = self._query_args["select"], self._query_args["keys"], self._query_args["session"]
        page = list(session.scalars(keys.limit(self.per_page).offset(self._query_offset)))
        return list(session.scalars(select.where(keys.selected_columns[0].in_(page)))) if page else []


def paginate_entities(select, id_column, per_page: int = PER_PAGE_DEFAULT) -> EntityPagination:
    """db.paginate for `select(Entity)`, with the page's ids picked first on `id_column` alone.

    The offset then walks ids (an index) rather than whole rows: a deep page costs about what
    the first one does.
    """
    return EntityPagination(select=select, keys=select.with_only_columns(id_column), session=db.session(),
                            page=page_arg(), per_page=per_page, max_per_page=PER_PAGE_MAX, error_out=False, count=True)


def paginate_rows(select, per_page: int = PER_PAGE_DEFAULT, *, keys=None) -> RowPagination:
    return RowPagination(select=select, keys=keys, session=db.session(), page=page_arg(),
                         per_page=per_page, max_per_page=PER_PAGE_MAX, error_out=False, count=True)
