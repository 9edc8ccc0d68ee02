"""Forms for managing accounts."""

from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..forms import AppForm, choices
from ..limits import CODE_MAX, LABEL_MAX, NAME_MAX, PASSWORD_MAX, REASON_MAX, USERNAME_MAX
from ..permissions import ROLE_LABELS, ROLES

ROLE_CHOICES = choices((role, ROLE_LABELS[role]) for role in ROLES)


class UserCreateForm(AppForm):
    username = StringField("Username", validators=[
        DataRequired(), Length(max=USERNAME_MAX),
        Regexp(r"^[A-Za-z0-9._-]+$", message="Letters, digits, dot, dash and underscore only."),
    ])
    display_name = StringField("Printed name (shown on signatures)",
                               validators=[DataRequired(), Length(max=NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    temporary_password = PasswordField(
        "Temporary password", validators=[DataRequired(), Length(max=PASSWORD_MAX)],
        description="The user must replace it at first sign-in.",
        render_kw={"autocomplete": "new-password"})
    password = PasswordField(
        "Your password (e-signature)", validators=[Optional(), Length(max=PASSWORD_MAX)],
        description="Needed only to create an administrator: you sign for it.",
        render_kw={"autocomplete": "current-password"})


class UserEditForm(AppForm):
    display_name = StringField("Printed name", validators=[DataRequired(), Length(max=NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = PasswordField(
        "Your password (e-signature)", validators=[Optional(), Length(max=PASSWORD_MAX)],
        description="Needed only to change a role to or from administrator: you sign for it.",
        render_kw={"autocomplete": "current-password"})


class TemporaryPasswordForm(AppForm):
    temporary_password = PasswordField(
        "New temporary password", validators=[DataRequired(), Length(max=PASSWORD_MAX)],
        render_kw={"autocomplete": "new-password"})


class ActiveForm(AppForm):
    reason = StringField("Reason", validators=[Optional(), Length(max=REASON_MAX)])


class AuditFilterForm(AppForm):
    class Meta:
        csrf = False

    entity_type = StringField("Entity", validators=[Optional(), Length(max=CODE_MAX)])
    # Stripped, so a blank is no filter; at most 9 digits, so it fits the database's integer.
    entity_id = StringField("Record id", validators=[Optional(), Regexp(r"^\d{1,9}$", message="Up to 9 digits.")],
                            filters=[lambda value: value.strip() if isinstance(value, str) else value])
    user = StringField("User", validators=[Optional(), Length(max=USERNAME_MAX)])
    action = StringField("Action", validators=[Optional(), Length(max=LABEL_MAX)])
    start = StringField("From (date)", validators=[Optional()], render_kw={"type": "date"})
    end = StringField("To (date)", validators=[Optional()], render_kw={"type": "date"})
