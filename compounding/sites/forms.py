"""Forms for sites, storage locations, the site switcher, and the "where does it go" select."""

from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

from .. import site_scope
from ..forms import AppForm, Between, choices
from ..limits import NAME_MAX, NOTE_MAX, REASON_MAX
from ..models.site import LOCATION_CODE_MAX, LOCATION_KINDS, SITE_CODE_MAX, TIMEZONE_MAX
from ..services import site_reads, sites

CELSIUS = Regexp(r"^-?\d{1,2}(\.\d)?$", message="Degrees Celsius, e.g. 2 or -20 or 7.5.")


class SiteForm(AppForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=SITE_CODE_MAX)],
                       description="2 to 12 upper-case letters, digits or hyphens (LYON, MAD-01); it cannot change.",
                       filters=[lambda value: value.strip().upper() if isinstance(value, str) else value])
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX)])
    timezone = StringField("Time zone", validators=[DataRequired(), Length(max=TIMEZONE_MAX)],
                           description="An IANA name such as Europe/Paris.", render_kw={"list": "zones"})
    address = TextAreaField("Address", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})


class SiteEditForm(SiteForm):
    code = None


class LocationForm(AppForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX)],
                       render_kw={"placeholder": "e.g. Fridge 2"})
    kind = SelectField("Kind", choices=choices(LOCATION_KINDS))
    parent_id = SelectField("Inside", coerce=int, validators=[Optional()])
    code = StringField("Code", validators=[Optional(), Length(max=LOCATION_CODE_MAX)],
                       description="Leave blank for the next LOC number; printed on its label and scanned.")
    min_celsius = StringField("Lowest allowed (°C)", validators=[Optional(), CELSIUS],
                              render_kw={"inputmode": "decimal"})
    max_celsius = StringField("Highest allowed (°C)", validators=[Optional(), CELSIUS],
                              render_kw={"inputmode": "decimal"})
    readings_per_day = IntegerField(
        "Readings per day", default=2,
        validators=[Optional(), Between(sites.READINGS_PER_DAY_MIN, sites.READINGS_PER_DAY_MAX,
                                        "A whole number from 1 to 96.")],
        description="How often its temperature is read (2: morning and evening); a missed one shows red.",
        render_kw={"inputmode": "numeric"})


class LocationEditForm(LocationForm):
    code = None


class DeactivateForm(AppForm):
    reason = StringField("Reason", validators=[Optional(), Length(max=REASON_MAX)])


def parent_choices(tree, exclude: int | None = None) -> list[SelectChoice]:
    """A site's places, indented, to put a location inside (never itself)."""
    return [SelectChoice(0, "— nowhere (a room of its own) —"), *(
        SelectChoice(node.location.id, "\u00a0\u00a0" * node.depth + f"{node.location.name} ({node.location.code})")
        for node in tree if node.location.id != exclude and node.location.active)]


def location_choices(groups) -> list[SelectChoice]:
    """Active locations grouped by site (an optgroup each), indented by depth."""
    return [SelectChoice(node.location.id,
                         "\u00a0\u00a0" * node.depth + f"{node.location.name} · {node.location.code}",
                         optgroup=f"{site.code} — {site.name}")
            for site, tree in groups for node in tree]


def offer_locations(field, user) -> None:
    """Fill a "where does it go" select: the active locations of the sites the user works at now, grouped
    by site; unless chosen, the acting site's default location."""
    field.choices = location_choices(site_reads.choosable_locations(site_scope.current_scope(user)))
    if not field.data:
        field.data = sites.default_location(site_scope.acting_site_id(user)).id
