"""Recall forms: opening and closing (e-signatures), ticking a contact, a one-click quarantine."""

from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from ..forms import AppForm, choices
from ..models.recall import CONTACT_METHODS

SIGNATURE_LABEL = "Your password (e-signature)"


class OpenRecallForm(AppForm):
    reason = TextAreaField("Reason", validators=[DataRequired("Say why the recall is opened."), Length(max=5000)],
                           render_kw={"rows": 3},
                           description="What is wrong and where it came from (supplier alert, adverse events, ...).")
    password = PasswordField(SIGNATURE_LABEL, validators=[DataRequired("Sign with your password.")],
                             render_kw={"autocomplete": "current-password"})


class ContactForm(AppForm):
    method = SelectField("How", choices=choices(CONTACT_METHODS), validators=[AnyOf(CONTACT_METHODS)])
    note = StringField("Note", validators=[Optional(), Length(max=2000)],
                       render_kw={"placeholder": "e.g. left a voicemail, review booked"})


class CloseRecallForm(AppForm):
    outcome = TextAreaField("Outcome", validators=[DataRequired("Record the outcome of the recall."),
                                                   Length(max=5000)], render_kw={"rows": 3},
                            description="What was found and done; recalled stock stays recalled.")
    password = PasswordField(SIGNATURE_LABEL, validators=[DataRequired("Sign with your password.")],
                             render_kw={"autocomplete": "current-password"})


class QuarantineForm(AppForm):
    reason = StringField("Reason", validators=[DataRequired("Say why the lot is quarantined."), Length(max=2000)])
    back = HiddenField(validators=[Optional(), AnyOf(("dashboard", "trace"))])
