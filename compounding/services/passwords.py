"""What makes a new password too weak: a shipped common-password list and zxcvbn's estimate."""

from functools import cache
from importlib import resources

from zxcvbn import zxcvbn

# Published in the README and printed by `seed-demo`: accepted only when seed-demo creates
# the demo accounts (users.create_user(allow_demo_password=True)), refused everywhere else.
DEMO_PASSWORD = "meso-demo-2026"

# The estimator's cost grows with length; what it judges in the first 100 characters stands.
_ESTIMATE_CHARACTERS = 100
_PADDING = "0123456789!@#$%^&*()-_=+.,;:?'\"/\\|~`[]{}<> "


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list (compounding/data/common_passwords.txt, source and licence beside it)."""
    text = resources.files("compounding").joinpath("data/common_passwords.txt").read_text("utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    """On the list, or a listed word with only digits and symbols around it ("Password2026!")."""
    lowered = password.lower()
    core = lowered.strip(_PADDING)
    listed = common_passwords()
    return lowered in listed or (len(core) >= 4 and core in listed)


def weakness(password: str, *, user_inputs: list[str], min_score: int) -> str:
    """Why `password` is too weak to accept, or "" when it is strong enough."""
    if password.lower() == DEMO_PASSWORD:
        return "This is the published demo password; choose another."
    if is_common(password):
        return "This password is too common: it is on a list of common passwords; choose another."
    estimate = zxcvbn(password[:_ESTIMATE_CHARACTERS], user_inputs=[i for i in user_inputs if i])
    if estimate["score"] >= min_score:
        return ""
    feedback = estimate["feedback"]
    hints = " ".join(part for part in [feedback.get("warning", ""), *feedback.get("suggestions", [])] if part)
    return ("This password is too easy to guess; choose a longer one, for example several unrelated words."
            + (f" {hints}" if hints else ""))
