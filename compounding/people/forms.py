"""Forms of the people pages: a qualification result, its void, and a qualification kind."""

from wtforms import BooleanField, DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..forms import AppForm, Between, choices, in_day_range, reason_field
from ..limits import LABEL_MAX, NAME_MAX, NOTE_MAX
from ..models.people import QUALIFICATION_RESULTS
from ..services.qualifications import CFU_MAX

NUMERIC = {"inputmode": "numeric"}


class QualificationForm(AppForm):
    """One result for one person; the kind's rules (interval, CFU, initial series) are the service's."""

    kind = SelectField("Qualification", validators=[DataRequired("Choose the qualification.")])
    passed_on = DateField("Date of the test or assessment",
                          # InputRequired keeps DateField's own message for a value it cannot read.
                          validators=[InputRequired("The day it was performed, e.g. 2026-11-30."), in_day_range])
    result = SelectField("Result", choices=choices(QUALIFICATION_RESULTS))
    cfu = IntegerField("Colony-forming units counted", render_kw=NUMERIC,
                       validators=[Optional(), Between(0, CFU_MAX, f"A whole number from 0 to {CFU_MAX}.")],
                       description="Only for kinds that count them (gloved fingertip sampling): 0 during the "
                                   "initial series.")
    valid_until = DateField("Valid until", validators=[Optional(), in_day_range],
                            description="Leave empty for the kind's interval from the day passed; empty for a fail.")
    assessor = StringField("Assessor", validators=[Optional(), Length(max=NAME_MAX)])
    note = TextAreaField("Note", validators=[Optional(), Length(max=NOTE_MAX)], render_kw={"rows": 2})


class VoidForm(AppForm):
    """A record entered by mistake: it stays, struck through, with the reason."""

    reason = reason_field()


def void_form(record_id: int) -> VoidForm:
    """A record's own void form: its fields prefixed with the record, so each on the page has its own ids."""
    return VoidForm(prefix=f"void{record_id}")


class KindForm(AppForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=LABEL_MAX)],
                       description="Lower-case letters, digits and underscores (aseptic_technique); it cannot change.")
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX)])
    valid_months = IntegerField("Months valid", default=6, render_kw=NUMERIC,
                                validators=[DataRequired("A whole number from 1 to 60."),
                                            Between(1, 60, "A whole number from 1 to 60.")],
                                description="Category 1 and 2 compounding (USP <797>: 6).")
    category3_months = IntegerField("Months valid for Category 3", default=3, render_kw=NUMERIC,
                                    validators=[DataRequired("A whole number from 1 to 60."),
                                                Between(1, 60, "A whole number from 1 to 60.")],
                                    description="Not longer than the usual interval (USP <797>: 3).")
    initial_passes = IntegerField("Initial passes in a row", default=1, render_kw=NUMERIC,
                                  validators=[DataRequired("A whole number from 1 to 10."),
                                              Between(1, 10, "A whole number from 1 to 10.")],
                                  description="Passes needed before the first one qualifies.")
    counts_cfu = BooleanField("Counts colony-forming units")
    required = BooleanField("Required to compound and verify", default=True)


class KindEditForm(KindForm):
    code = None
    active = BooleanField("Recorded (active)", default=True,
                          description="An inactive kind is no longer recorded, required or shown.")


def kind_choices(kinds) -> list:
    return choices([(kind.code, kind.name) for kind in kinds])
