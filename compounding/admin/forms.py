"""Forms for managing accounts."""

from wtforms import BooleanField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from ..forms import AppForm, choices
from ..limits import CODE_MAX, LABEL_MAX, NAME_MAX, PASSWORD_MAX, REASON_MAX, USERNAME_MAX
from ..permissions import ROLE_LABELS, ROLES
from ..services.users import EMAIL_MAX

ROLE_CHOICES = choices((role, ROLE_LABELS[role]) for role in ROLES)


class SiteBoxes(SelectMultipleField):
    """Checkboxes, one per site."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SiteMemberships:
    """The memberships part of a form: which sites, and whether the whole chain is seen."""

    site_ids = SiteBoxes("Sites", coerce=int, validators=[DataRequired("Choose at least one site.")],
                         description="Where the user receives, compounds and treats.")
    all_sites = BooleanField("Sees every site (chain pharmacist)", description="Auditors always see every site.")


class UserCreateForm(SiteMemberships, AppForm):
    site_ids = SiteBoxes("Sites", coerce=int, validators=[Optional()],
                         description="Where the user receives, compounds and treats (none ticked: MAIN).")
    username = StringField("Username", validators=[
        DataRequired(), Length(max=USERNAME_MAX),
        Regexp(r"^[A-Za-z0-9._-]+$", message="Letters, digits, dot, dash and underscore only."),
    ])
    display_name = StringField("Printed name (shown on signatures)",
                               validators=[DataRequired(), Length(max=NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    email = StringField("E-mail (optional)", validators=[Optional(), Length(max=EMAIL_MAX)],
                        description="Pharmacists get the daily digest of their sites here.",
                        render_kw={"type": "email", "autocomplete": "off"})
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
    email = StringField("E-mail", validators=[Optional(), Length(max=EMAIL_MAX)],
                        description="Pharmacists get the daily digest of their sites here; blank: none.",
                        render_kw={"type": "email", "autocomplete": "off"})
    password = PasswordField(
        "Your password (e-signature)", validators=[Optional(), Length(max=PASSWORD_MAX)],
        description="Needed only to change a role to or from administrator: you sign for it.",
        render_kw={"autocomplete": "current-password"})


class UserSitesForm(SiteMemberships, AppForm):
    """A user's sites, on the account's page."""


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
