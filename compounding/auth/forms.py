"""Sign-in and password forms (shape only; the rules live in services.users)."""

from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from ..forms import AppForm


class LoginForm(AppForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)],
                             render_kw={"autocomplete": "current-password"})


class ChangePasswordForm(AppForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=200)],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=200)],
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(), EqualTo("new_password",
                                                                "The two passwords differ.")],
                            render_kw={"autocomplete": "new-password"})
