"""Services check the actor's role too, so no caller (view, API, CLI) can skip it."""

from ..models import User
from ..permissions import role_can
from .errors import NotAllowed


def ensure_can(actor: User, permission: str, doing: str) -> None:
    if actor is None or not actor.active or not role_can(actor.role, permission):
        role = actor.role if actor is not None else "nobody"
        raise NotAllowed(f"A {role} cannot {doing}.")
