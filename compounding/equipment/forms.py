"""Equipment forms: registering a piece, recording a calibration, renaming or retiring it."""

from wtforms import BooleanField, DateField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..forms import AppForm, choices, in_day_range
from ..limits import CODE_MAX, NAME_MAX, NOTE_MAX
from ..models.equipment import CALIBRATION_RESULTS, EQUIPMENT_KIND_TEXT


def _upper(value):
    return value.strip().upper() if isinstance(value, str) else value


class EquipmentForm(AppForm):
    code = StringField("Code", validators=[DataRequired("Give the equipment a code."), Length(max=CODE_MAX)],
                       filters=[_upper], render_kw={"autocomplete": "off", "spellcheck": "false"},
                       description="As on its label, e.g. BAL-01: letters, digits and hyphens; it cannot change.")
    kind = SelectField("Kind", choices=choices(list(EQUIPMENT_KIND_TEXT.items())))
    name = StringField("Name", validators=[Optional(), Length(max=NAME_MAX)],
                       description="e.g. Analytical balance 0.1 mg (default: the code).")
    serial_number = StringField("Serial number", validators=[Optional(), Length(max=NAME_MAX)])
    site_id = SelectField("Site", coerce=int)
    due_on = DateField("Calibration or certification due", validators=[InputRequired("When is it due?"),
                                                                       in_day_range],
                       description="Usable until this day included.")


class CalibrationForm(AppForm):
    performed_on = DateField("Performed on", validators=[InputRequired("When was it done?"), in_day_range])
    result = SelectField("Result", choices=choices(CALIBRATION_RESULTS))
    next_due_on = DateField("Next due", validators=[Optional(), in_day_range],
                            description="Required for a pass; a fail takes it out of service.")
    performed_by = StringField("Performed by", validators=[Optional(), Length(max=NAME_MAX)],
                               description="The metrology service or person.")
    certificate_number = StringField("Certificate number", validators=[Optional(), Length(max=NAME_MAX)])
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})


class EquipmentEditForm(AppForm):
    name = StringField("Name", validators=[DataRequired("Name the equipment."), Length(max=NAME_MAX)])
    serial_number = StringField("Serial number", validators=[Optional(), Length(max=NAME_MAX)])
    active = BooleanField("In use (untick to retire it: it is no longer offered at the bench)")
