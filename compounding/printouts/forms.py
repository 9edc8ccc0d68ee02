"""Print options read from the query string: which vials, how many copies, which label size, on which paper."""

from wtforms import Form, IntegerField, SelectField
from wtforms.validators import Optional

from ..forms import Between, choices

MAX_COPIES = 100
# A batch's vials number at most what a batch may hold; the range is checked against the batch in the view.
MAX_VIAL_NUMBER = 9999
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


class BatchPrintOptionsForm(PrintOptionsForm):
    """A batch prints one label per vial (each `copies` times): all of them, or the range from..to."""

    vial_from = IntegerField("From vial", validators=[Optional(), Between(1, MAX_VIAL_NUMBER)],
                             render_kw={"min": 1, "placeholder": "first"})
    vial_to = IntegerField("To vial", validators=[Optional(), Between(1, MAX_VIAL_NUMBER)],
                           render_kw={"min": 1, "placeholder": "last"})

    def check_range(self, last: int | None) -> None:
        """The range must lie within the batch's vials (numbered 1..last), from before to."""
        start, end = self.vial_from.data, self.vial_to.data
        if last is None:
            if start is not None or end is not None:
                self.vial_from.errors = [*self.vial_from.errors, "This batch has no vials to choose from."]
            return
        if start is not None and start > last:
            self.vial_from.errors = [*self.vial_from.errors, f"The batch's vials run from 1 to {last}."]
        if end is not None and end > last:
            self.vial_to.errors = [*self.vial_to.errors, f"The batch's vials run from 1 to {last}."]
        if start is not None and end is not None and start > end:
            self.vial_to.errors = [*self.vial_to.errors, f"Vial {end} comes before vial {start}."]
