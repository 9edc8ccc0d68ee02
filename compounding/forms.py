"""Helpers shared by the forms of every area."""

from flask_wtf import FlaskForm

from .services.errors import DomainError


def apply_domain_error(form: FlaskForm, exc: DomainError) -> None:
    """Show a service's refusal next to the field it names, or at the top of the form."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message]
    else:
        form.form_errors.append(exc.message)
