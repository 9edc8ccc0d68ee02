"""Transfer forms: a draft (destination, codes scanned with lots' quantities), dispatch, receipt, cancel."""

from decimal import Decimal, InvalidOperation

from wtforms import SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import AppForm, reason_field
from ..limits import NOTE_MAX
from ..services.transfer_lines import LINES_MAX

CODES_MAX = LINES_MAX * 48


def scanned_lines(text: str) -> list[tuple[str, str | None]]:
    """(code, quantity or None) per non-empty line: `B2612060001-02`, `B2612060001`, `L000123 4.5`."""
    found = []
    for raw in (text or "").replace(",", "\n").splitlines():
        parts = raw.split()
        if parts:
            found.append((parts[0].upper(), parts[1] if len(parts) > 1 else None))
    return found


class TransferForm(AppForm):
    from_site_id = SelectField("From site", coerce=int, validators=[DataRequired()])
    to_site_id = SelectField("To site", coerce=int, validators=[DataRequired()])
    codes = TextAreaField("Codes", validators=[DataRequired(message="Scan at least one code."),
                                               Length(max=CODES_MAX)],
                          description="Scan or type one code a line: a vial, a batch (its vials that can travel), "
                                      "or a lot followed by the quantity to send (L000123 4).",
                          render_kw={"rows": 6, "class": "scan-field", "autocomplete": "off"})
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})

    def validate_codes(self, field):
        lines = scanned_lines(field.data)
        if len(lines) > LINES_MAX:
            raise ValidationError(f"At most {LINES_MAX} codes.")
        for code, quantity in lines:
            if quantity is not None:
                try:
                    Decimal(quantity)
                except InvalidOperation:
                    raise ValidationError(f"{code}: {quantity} is not a quantity.") from None


class DispatchForm(AppForm):
    scanned_codes = TextAreaField("Scanned out", validators=[Length(max=CODES_MAX)],
                                  description="Every line's code, scanned from what goes in the box.",
                                  render_kw={"rows": 3, "autocomplete": "off"})


class ReceiveForm(AppForm):
    """Per line `received-<id>` and `damaged-<id>` come as plain inputs (the lines vary)."""

    # The destination site's active locations, filled by the page; the planned one first.
    to_location_id = SelectField("Put it at", coerce=int, validate_choice=False, validators=[Optional()])


class CancelForm(AppForm):
    reason = reason_field()
