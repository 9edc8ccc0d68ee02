"""Lot forms: receiving, release/reject signatures, adjustments (shape only)."""

from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from ..forms import AppForm, SignatureForm, choices
from ..limits import LABEL_MAX, NAME_MAX, NOTE_MAX, REASON_MAX
from ..models.ledger import ADJUST_REASONS
from ..services.errors import DomainError
from ..services.expiry import parse_expiry
from ..services.inventory import check_quantity

QUANTITY_HELP = "In the ingredient's stock unit; at most 3 decimals."


def validate_quantity(form, field):
    try:
        field.parsed = check_quantity(field.data, field.name)
    except DomainError as exc:
        raise ValidationError(exc.message) from None


def validate_expiry(form, field):
    try:
        field.parsed = parse_expiry(field.data)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class ReceiveLotForm(AppForm):
    ingredient_id = SelectField("Ingredient", coerce=int, validators=[DataRequired("Choose the ingredient.")])
    supplier = StringField("Supplier", validators=[DataRequired(), Length(max=NAME_MAX)])
    lot_number = StringField("Supplier lot number", validators=[DataRequired(), Length(max=LABEL_MAX)])
    gtin = StringField("GTIN", validators=[Optional(), Regexp(r"^\d{8,14}$", message="8 to 14 digits.")],
                       description="From the supplier's barcode, if it has one.")
    expiry_date = StringField("Expiry", validators=[DataRequired(), validate_expiry],
                              description="YYYY-MM-DD, or YYYY-MM for a month-only expiry "
                                          "(stored as the month's last day).",
                              render_kw={"placeholder": "2027-06-30 or 2027-06"})
    quantity = StringField("Quantity received", validators=[DataRequired(), validate_quantity],
                           description=QUANTITY_HELP, render_kw={"inputmode": "decimal"})
    coa_reference = StringField("Certificate of analysis reference", validators=[Optional(), Length(max=NAME_MAX)])
    location_id = SelectField("Storage location", coerce=int, validators=[DataRequired("Choose where it goes.")],
                              description="Your site's default unless you choose another place.")
    location = StringField("Shelf or box (optional)", validators=[Optional(), Length(max=NAME_MAX)],
                           render_kw={"placeholder": "e.g. shelf B"})


class AdjustForm(AppForm):
    reason = SelectField("Reason", choices=choices(ADJUST_REASONS))
    direction = SelectField("Direction", choices=choices([
        ("out", "Take out of stock"),
        ("in", "Add to stock (count correction or return: a pharmacist signs)")]))
    quantity = StringField("Quantity", validators=[DataRequired(), validate_quantity],
                           description=QUANTITY_HELP, render_kw={"inputmode": "decimal"})
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2},
                         description="Required for a count correction or a return to stock.")
    password = PasswordField("Your password (e-signature, to add stock)", validators=[Optional()],
                             render_kw={"autocomplete": "current-password"},
                             description="Stock only goes up with a pharmacist's signature, "
                                         "never above the quantity received.")


class ReleaseForm(SignatureForm):
    """The release signature; the reason is asked for (and required by the service) only when no certificate of
    analysis is attached."""

    reason = TextAreaField("Reason for releasing without a certificate of analysis", render_kw={"rows": 2},
                           validators=[Optional(), Length(max=REASON_MAX)],
                           description="Kept on the lot and in its audit trail.")
