"""What a page does with a form posted from it: a record's signed actions, revoking an API token."""

from collections.abc import Callable
from dataclasses import dataclass

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from .forms import ConfirmForm, ReleaseHoldForm, submit
from .services import holds, users
from .services.errors import DomainError, NotFound


@dataclass(frozen=True)
class RecordPage:
    """A record's detail page: `render(record_id, status, **forms)` draws it, `endpoint` shows it again."""

    endpoint: str
    id_arg: str
    render: Callable

    def post(self, record_id: int, form_name: str, form, action, message, category: str = "success"):
        """Submit `form` and run `action()`; then flash `message(result)` and go back to the record,
        or draw the page again (422) with the form and its errors."""
        result = submit(form, action)
        if result is None:
            return self.render(record_id, 422, **{form_name: form})
        flash(message(result), category)
        return redirect(url_for(self.endpoint, **{self.id_arg: record_id}))

    def release_hold(self, kind: str, record_id: int):
        """A pharmacist releases one hold reason of the lot or batch the page shows (a signature)."""
        form = ReleaseHoldForm()
        return self.post(
            record_id, "hold_form", form,
            lambda: holds.release_hold(current_user, kind, record_id, form.hold.data, form.reason.data,
                                       form.password.data),
            lambda item: f"{form.hold.data.replace('_', ' ').capitalize()} hold on {item.code} released, signed by "
                         f"{current_user.display_name}; it is now {item.status.replace('_', ' ')}.")


def revoke_token(token_id: int, owner, revoked) -> None:
    """Revoke one of `owner`'s API tokens from its confirm button; flash `revoked(token)` or the refusal.

    A token that is not there, or not the owner's, is the app's 404 page.
    """
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        token = users.revoke_token(current_user, token_id, owner=owner)
    except NotFound:
        raise  # the app's 404 page, with its message
    except DomainError as exc:
        flash(exc.message, "warning")
    else:
        flash(revoked(token), "success")
