"""Batch forms: the fixed part of the compounding form, verification, rejection, discard."""

from wtforms import IntegerField, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..forms import AppForm, Between, choices
from ..limits import NOTE_MAX, NOTES_MAX
from ..models.batch import DISCARD_REASONS
from ..services.batches import MAX_UNITS


class CompoundForm(AppForm):
    formula_id = SelectField("Formula (approved versions)", coerce=int,
                             validators=[DataRequired("Choose a formula.")])
    units = IntegerField("Units", validators=[InputRequired("How many units?"),
                                              Between(1, MAX_UNITS, f"Between 1 and {MAX_UNITS}.")],
                         render_kw={"inputmode": "numeric"})
    deviation_note = TextAreaField("Deviation note", validators=[Optional(), Length(max=NOTE_MAX)],
                                   render_kw={"rows": 2},
                                   description="Required when an actual quantity differs from the formula.")
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=NOTES_MAX)], render_kw={"rows": 2})


class DiscardForm(AppForm):
    reason = SelectField("Reason", choices=choices(DISCARD_REASONS))
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2},
                         description="Required for 'other'.")
