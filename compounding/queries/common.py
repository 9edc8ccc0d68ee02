"""What every list shares: the search box, LIKE patterns, record ids and days in a query string."""

from datetime import date

from ..limits import SEARCH_MAX
from ..models._common import MAX_RECORD_ID
from ..services.bounds import read_day

SEARCH_MESSAGE = f"A search of at most {SEARCH_MAX} characters."


def escape_like(text: str) -> str:
    """`text` with the LIKE metacharacters taken literally (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with the user's % and _ taken literally."""
    return f"%{escape_like(text)}%"


def search_arg(args, errors: dict[str, str], name: str = "q") -> str:
    """The search box, stripped; longer than SEARCH_MAX it is refused, as the API refuses it.

    A refused search is left out of the filters and its message goes into `errors`.
    """
    text = (args.get(name) or "").strip()
    if len(text) > SEARCH_MAX:
        errors[name] = SEARCH_MESSAGE
        return ""
    return text


def record_id(value: str) -> int:
    """A query argument naming a record, for `args.get(name, type=record_id)`: None unless it could be an id.

    A larger number would overflow the database driver (a 500) instead of finding nothing.
    """
    number = int(value)
    if not 0 < number <= MAX_RECORD_ID:
        raise ValueError(value)
    return number


def day_args(args, *names: str) -> tuple[dict[str, date | None], dict[str, str]]:
    """The days a query string gives for `names`, and a message for each one that is malformed
    or outside 1900-2100 (that filter is then left out, and the page answers 422)."""
    days, errors = {}, {}
    for name in names:
        try:
            days[name] = read_day(args.get(name))
        except ValueError as exc:
            days[name], errors[name] = None, str(exc)
    return days, errors
