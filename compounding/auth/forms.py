"""Sign-in, password and own-account forms (shape only; the rules live in services.users)."""

from wtforms import IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from ..forms import AppForm
from ..limits import PASSWORD_MAX, USERNAME_MAX
from ..models.user import TOKEN_NAME_LENGTH
from ..services.users import EMAIL_MAX, MAX_TOKEN_DAYS


class LoginForm(AppForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)],
                             render_kw={"autocomplete": "current-password"})


class ChangePasswordForm(AppForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX)],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=PASSWORD_MAX)],
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new_password",
                                                                "The two passwords differ.")],
                            render_kw={"autocomplete": "new-password"})


class TokenCreateForm(AppForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=TOKEN_NAME_LENGTH)],
                       description="What uses it, e.g. \"scanner 1\" or \"stock sync\".")
    days = IntegerField("Days until it expires", validators=[Optional(), NumberRange(min=1, max=MAX_TOKEN_DAYS)],
                        description="Leave blank for the clinic's default.")


class EmailForm(AppForm):
    email = StringField("Your e-mail address", validators=[Optional(), Length(max=EMAIL_MAX)],
                        description="Where your daily digest goes (pharmacists); blank: none.",
                        render_kw={"type": "email", "autocomplete": "email"})
