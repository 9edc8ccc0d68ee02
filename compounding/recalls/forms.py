"""Recall forms: opening and closing (e-signatures), a patient's attempt and outcome, a one-click quarantine."""

from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from ..forms import AppForm, choices
from ..limits import NOTE_MAX, NOTES_MAX, REASON_MAX
from ..models.recall import CONTACT_METHODS, CONTACT_OUTCOMES

SIGNATURE_LABEL = "Your password (e-signature)"


class OpenRecallForm(AppForm):
    reason = TextAreaField("Reason", validators=[DataRequired("Say why the recall is opened."), Length(max=NOTES_MAX)],
                           render_kw={"rows": 3},
                           description="What is wrong and where it came from (supplier alert, adverse events, ...).")
    password = PasswordField(SIGNATURE_LABEL, validators=[DataRequired("Sign with your password.")],
                             render_kw={"autocomplete": "current-password"})


class ContactForm(AppForm):
    """One attempt to reach a patient and its outcome; the service checks method, attempts and signature."""

    outcome = SelectField("Outcome", choices=choices(CONTACT_OUTCOMES), default="reached",
                          validators=[AnyOf(CONTACT_OUTCOMES)])
    method = SelectField("How", choices=choices([("", "How? (none)"), *CONTACT_METHODS]),
                         validators=[Optional(), AnyOf(CONTACT_METHODS)])
    note = StringField("Note", validators=[Optional(), Length(max=NOTE_MAX)],
                       render_kw={"placeholder": "e.g. left a voicemail, review booked"})
    password = PasswordField("Pharmacist's password", validators=[Optional()],
                             render_kw={"autocomplete": "current-password", "placeholder": "for not exposed"})


class CloseRecallForm(AppForm):
    outcome = TextAreaField("Outcome", validators=[DataRequired("Record the outcome of the recall."),
                                                   Length(max=NOTES_MAX)], render_kw={"rows": 3},
                            description="What was found and done; recalled stock stays recalled.")
    password = PasswordField(SIGNATURE_LABEL, validators=[DataRequired("Sign with your password.")],
                             render_kw={"autocomplete": "current-password"})


class QuarantineForm(AppForm):
    reason = StringField("Reason", validators=[DataRequired("Say why the lot is quarantined."), Length(max=REASON_MAX)])
    back = HiddenField(validators=[Optional(), AnyOf(("dashboard", "trace"))])
