"""Excursion forms: the pharmacist's signed decision on the held stock."""

from datetime import datetime
from zoneinfo import ZoneInfo

from wtforms import DateTimeLocalField, SelectField, SelectMultipleField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import SignatureForm, choices, in_day_range
from ..limits import REASON_MAX

DECISION_LABELS = (
    ("keep", "Keep (stability data or an assessment allow it)"),
    ("keep_shortened", "Keep with a shorter use-by"),
    ("discard", "Discard (written off)"),
)


class DecideForm(SignatureForm):
    """Decision, reason, the new use-by (keep_shortened only, in the site's zone), the items, the signature.

    `items` are the held codes ticked in the table; none ticked is every item still undecided.
    Field names are the service's, so a refusal lands beside the field it names.
    """

    decision = SelectField("Decision", choices=choices(DECISION_LABELS), validators=[DataRequired()])
    reason = TextAreaField("Reason", render_kw={"rows": 2},
                           validators=[DataRequired("Say why (for a keep: the stability data or the assessment)."),
                                       Length(max=REASON_MAX)])
    beyond_use_at = DateTimeLocalField("New use-by", format="%Y-%m-%dT%H:%M",
                                       validators=[Optional(), in_day_range],
                                       description="Only for a keep with a shorter use-by: earlier than the "
                                                   "item's own, in the site's time zone.")
    items = SelectMultipleField("Items", choices=[], validate_choice=True)

    def validate_beyond_use_at(self, field):
        if self.decision.data == "keep_shortened" and field.data is None and not field.errors:
            raise ValidationError("Give the new, earlier use-by.")

    def use_by_iso(self, zone_name: str) -> str | None:
        """The use-by typed as a wall-clock time at the site, as an ISO moment with its offset."""
        value: datetime | None = self.beyond_use_at.data
        return value.replace(tzinfo=ZoneInfo(zone_name)).isoformat() if value else None
