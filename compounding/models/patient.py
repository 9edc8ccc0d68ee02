"""Patients, identified by the clinic's chart number; contact details only for recalls."""

import unicodedata
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..limits import SHORT_TEXT_MAX
from ._common import utcnow

# The parts of a patient record a technician never sees.
IDENTITY_FIELDS = ("name", "birth_on", "phone", "email")


def fold(text: str | None) -> str:
    """Text as compared by people: no surrounding or doubled spaces, no case, no accents.

    "  Núñez " and "NUNEZ" fold alike, so the chart-number key and the name search treat
    them as the same.
    """
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


class Patient(db.Model):
    __tablename__ = "patients"
    # Same name and birth date: the duplicate check before registering someone new.
    __table_args__ = (sa.Index("ix_patients_name_key_birth_on", "name_key", "birth_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chart_number: Mapped[str] = mapped_column(sa.String(40), unique=True)
    # fold(chart_number): unique, so "ch-2001 " cannot join "CH-2001".
    chart_key: Mapped[str] = mapped_column(sa.String(40), unique=True, index=True)
    name: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="", index=True)
    # fold(name): what the search matches, so "nunez" finds "Núñez".
    name_key: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="")
    birth_on: Mapped[date | None]
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    email: Mapped[str] = mapped_column(sa.String(SHORT_TEXT_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def set_keys(self) -> None:
        """Derive the folded keys from chart number and name; call after changing either."""
        self.chart_key = fold(self.chart_number)
        self.name_key = fold(self.name)
