"""What every list shares: the search box and LIKE patterns."""

from ..limits import SEARCH_MAX

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

