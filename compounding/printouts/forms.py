"""Print options read from the query string: how many copies, on which kind of paper."""

from wtforms import Form, IntegerField, SelectField

from ..forms import Between, choices

MAX_COPIES = 100
SHEETS = (("label", "Label printer, 50 × 30 mm"), ("a4", "A4 sheet, 3 × 9 labels"))


class PrintOptionsForm(Form):
    """A GET form (no CSRF: it changes nothing)."""

    copies = IntegerField("Copies", default=1, validators=[Between(1, MAX_COPIES)],
                          render_kw={"min": 1, "max": MAX_COPIES})
    sheet = SelectField("Paper", choices=choices(SHEETS), default="label")
