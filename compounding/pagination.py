"""Pagination of multi-column selects (rows, not just the first entity)."""

from flask import request
from flask_sqlalchemy.pagination import SelectPagination

from .extensions import db


class RowPagination(SelectPagination):
    """Like db.paginate, but items are full rows: (Ingredient, on_hand, nearest_expiry, ...)."""

    def _query_items(self) -> list:
        select = self._query_args["select"].limit(self.per_page).offset(self._query_offset)
        return list(self._query_args["session"].execute(select).all())


def paginate_rows(select, per_page: int = 50) -> RowPagination:
    return RowPagination(select=select, session=db.session(), page=request.args.get("page", 1, type=int),
                         per_page=per_page, max_per_page=200, error_out=False, count=True)
