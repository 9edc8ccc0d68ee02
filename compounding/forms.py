"""Helpers shared by the forms of every area."""

from datetime import date, datetime
from decimal import Decimal

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import PasswordField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, StopValidation

from .idempotency import submission_key_input
from .limits import REASON_MAX
from .models.hold import HOLD_KINDS
from .services.bounds import DAY_MESSAGE, day_in_range
from .services.errors import DomainError
from .services.transaction import transaction


class AppForm(FlaskForm):
    """The base of every form: `hidden_tag()` renders the CSRF token and a one-time submission key.

    Templates render a form's hidden fields with `hidden_tag()` (or the `render` macro), so
    every state-changing form carries the key that makes its submission count once
    (compounding.idempotency) without any template asking for it.
    """

    def hidden_tag(self, *fields) -> Markup:
        return super().hidden_tag(*fields) + Markup("\n") + submission_key_input()


class ConfirmForm(AppForm):
    """A button that changes state: only the CSRF token and the one-time submission key."""


def apply_domain_error(form: FlaskForm, exc: DomainError) -> None:
    """Show a service's refusal next to the field it names, or at the top of the form."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message]
    else:
        form.form_errors.append(exc.message)
    if isinstance(exc.details, dict) and "qualifications" in exc.details:
        # Refused for the signed-in person's lapsed, failed or missing qualifications: the message links their page.
        form.refused_qualifications = exc.details["qualifications"]


class Between:
    """NumberRange for whole and decimal numbers, without its float conversion.

    WTForms' NumberRange turns the value into a float to test for NaN: a number of four
    hundred digits overflows there (a 500), and a Decimal NaN cannot be compared at all.
    Here both are refused, and the chain stops.
    """

    def __init__(self, minimum, maximum, message: str | None = None):
        self.minimum, self.maximum = minimum, maximum
        self.message = message or f"Enter a number between {minimum} and {maximum}."

    def __call__(self, form, field):
        value = field.data
        if value is None:
            return
        if isinstance(value, Decimal) and not value.is_finite():
            raise StopValidation(self.message)
        if not self.minimum <= value <= self.maximum:
            raise StopValidation(self.message)


def in_day_range(form, field):
    """A date or date-time field's value lies within 1900-2100 (services.bounds)."""
    value = field.data
    if isinstance(value, date | datetime) and not day_in_range(value):
        raise StopValidation(DAY_MESSAGE)


def choices(pairs) -> list[SelectChoice]:
    """Select options from (value, label) pairs, or from bare values labelled for people.

    WTForms 3.3 deprecates plain tuples as choices.
    """
    return [
        SelectChoice(*pair) if isinstance(pair, tuple) else SelectChoice(pair, pair.replace("_", " "))
        for pair in pairs
    ]


def submit(form: FlaskForm, action):
    """Validate `form` and run `action()` as one transaction; a refusal is shown on the form.

    Returns what the action returned, or None when the form or the rules said no.
    """
    if not form.validate_on_submit():
        return None
    try:
        with transaction():
            return action()
    except DomainError as exc:
        apply_domain_error(form, exc)
        return None


def signature_field() -> PasswordField:
    """The signer's password: the e-signature a release, rejection or approval asks for."""
    return PasswordField("Your password (e-signature)", validators=[DataRequired()],
                         render_kw={"autocomplete": "current-password"})


def reason_field() -> TextAreaField:
    """Why a record is rejected or withdrawn: required, kept with its history."""
    return TextAreaField("Reason", validators=[DataRequired(), Length(max=REASON_MAX)], render_kw={"rows": 2})


class SignatureForm(AppForm):
    """An action signed with the signer's password alone."""

    password = signature_field()


class SignedReasonForm(SignatureForm):
    """A signed action that says why: a rejection."""

    reason = reason_field()


class ReleaseHoldForm(AppForm):
    """A pharmacist releases one hold reason of a lot or batch."""

    hold = SelectField("Hold reason", choices=choices(HOLD_KINDS), validators=[DataRequired()])
    reason = TextAreaField("Why it may be used again", render_kw={"rows": 2},
                           validators=[DataRequired("Say why the hold is released."), Length(max=REASON_MAX)])
    password = signature_field()


def hold_form_for(item_holds, form: ReleaseHoldForm | None = None) -> ReleaseHoldForm:
    """The release form, offering only the kinds of hold that stand."""
    form = form or ReleaseHoldForm(formdata=None)
    kinds = list(dict.fromkeys(h.kind for h in item_holds if h.released_at is None))
    form.hold.choices = choices(kinds)
    return form
