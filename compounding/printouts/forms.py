"""Print options read from the query string: how many copies, which label size, on which paper."""

from wtforms import Form, IntegerField, SelectField

from ..forms import Between, choices

MAX_COPIES = 100
SHEETS = (("label", "Label printer"), ("a4", "A4 sheet"))
# The container label, and a larger one with room for who made it, the clinic and when.
SIZES = (("50x30", "50 × 30 mm"), ("57x32", "57 × 32 mm (with people, clinic, time)"))
# (columns, rows) of labels inside A4's 190 × 277 mm printable area.
A4_GRID = {"50x30": (3, 9), "57x32": (3, 8)}


class PrintOptionsForm(Form):
    """A GET form (no CSRF: it changes nothing)."""

    copies = IntegerField("Copies", default=1, validators=[Between(1, MAX_COPIES)],
                          render_kw={"min": 1, "max": MAX_COPIES})
    size = SelectField("Label size", choices=choices(SIZES), default="50x30")
    sheet = SelectField("Paper", choices=choices(SHEETS), default="label")
