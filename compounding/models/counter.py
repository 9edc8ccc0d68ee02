"""Counters behind our scannable codes (lots L000123, batches B2611270003)."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class CodeCounter(db.Model):
    __tablename__ = "code_counters"

    key: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)
