"""Formula forms: the record with a fixed table of component rows, approval, retirement (shape only).

Facts (code format and uniqueness, the BUD table's limit, a reason for a shorter BUD,
ingredients listed twice) are checked by services.formulas and shown next to their field.
"""

from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import AppForm, Between, choices, reason_field
from ..limits import FORMULA_CODE_MAX, INSTRUCTIONS_MAX, LABEL_MAX, NOTE_MAX, REASON_MAX, SHORT_TEXT_MAX
from ..models.formula import INDICATIONS, ROUTES
from ..models.ingredient import STORAGE_CONDITIONS
from ..models.vial import MAX_IN_USE_HOURS
from ..services.bud import BUD_TABLE
from ..services.errors import DomainError
from ..services.inventory import check_quantity

# Enough rows for any mesotherapy mix; blank rows are ignored, so no script adds rows.
COMPONENT_ROWS = 8
MAX_COMPONENT_ROWS = 40


def _parsed_quantity(field) -> None:
    try:
        field.parsed = check_quantity(field.data, field.name)
    except DomainError as exc:
        raise ValidationError(exc.message) from None


class ComponentForm(Form):
    """One row of the component table; a row with no ingredient, quantity or qs mark is blank.

    A qs row's quantity is computed by the service (the unit volume less the other liquids),
    so whatever is typed there is ignored.
    """

    ingredient_id = SelectField("Ingredient", coerce=int, default=0)
    quantity = StringField("Quantity per unit", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                           render_kw={"inputmode": "decimal"})
    qs = BooleanField("qs (to volume)")

    @property
    def is_blank(self) -> bool:
        return not self.ingredient_id.data and not self.quantity.data and not self.qs.data

    def validate_ingredient_id(self, field):
        if not field.data and (self.quantity.data or self.qs.data):
            raise ValidationError("Choose the ingredient.")

    def validate_quantity(self, field):
        field.parsed = None
        if self.qs.data:
            return
        if self.ingredient_id.data and not field.data:
            raise ValidationError("Enter the quantity per unit, or tick qs for the diluent that fills the unit.")
        if field.data:
            _parsed_quantity(field)


def _one_newline(value):
    """Browsers send textarea lines with CRLF; store plain newlines."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def validate_volume(form, field):
    _parsed_quantity(field)


DOSE_CHOICES = (("single", "Single-dose: one patient in one session"),
                ("multiple", "Multiple-dose: several patients until its in-use period ends"))
IN_USE_UNITS = (("days", "days"), ("hours", "hours"))
HOURS_PER = {"days": 24, "hours": 1}


def in_use_period_text(hours: int | None) -> tuple[int | None, str]:
    """(number, unit) the form shows for stored hours: days when they are whole days."""
    if not hours:
        return None, "days"
    return (hours // 24, "days") if hours % 24 == 0 else (hours, "hours")


def in_use_words(hours: int | None) -> str:
    """"7 days", "36 hours", "1 day": as the form shows it."""
    number, unit = in_use_period_text(hours)
    if number is None:
        return "—"
    return f"{number} {unit[:-1] if number == 1 else unit}"


class FormulaForm(AppForm):
    """A draft's fields; the code is fixed once created (see NewFormulaForm)."""

    EDITABLE = ("name", "indication", "route", "dosage_form", "unit_label", "instructions", "storage",
                "protect_from_light", "bud_category", "bud_hours", "bud_reason", "dose", "antimicrobial_evidence")

    name = StringField("Name", validators=[DataRequired(), Length(max=SHORT_TEXT_MAX)],
                       render_kw={"placeholder": "e.g. Lipolytic PC/DC 10 mL"})
    indication = SelectField("Indication", choices=choices(INDICATIONS))
    route = SelectField("Route", choices=choices(ROUTES))
    dosage_form = StringField("Dosage form", default="solution for injection",
                              validators=[DataRequired(), Length(max=LABEL_MAX)])
    unit_label = StringField("Unit", default="vial", validators=[Optional(), Length(max=LABEL_MAX)],
                             description='What one unit is, e.g. "vial 10 mL".')
    unit_volume_ml = StringField("Unit volume (mL)", validators=[DataRequired(), validate_volume],
                                 render_kw={"inputmode": "decimal"})
    instructions = TextAreaField("Compounding instructions", validators=[Optional(), Length(max=INSTRUCTIONS_MAX)],
                                 filters=[_one_newline],
                                 description="Step by step, one step per line. Required before approval.",
                                 render_kw={"rows": 8})
    storage = SelectField("Storage temperature", choices=choices(STORAGE_CONDITIONS), default="fridge")
    protect_from_light = BooleanField("Protect from light")
    bud_category = SelectField("Beyond-use date category (USP <797>)",
                               choices=choices([(key, row.label) for key, row in BUD_TABLE.items()]))
    bud_hours = IntegerField("Shorter beyond-use duration (hours)",
                             validators=[Optional(), Between(1, 100000)],
                             description="Leave empty to use the table's duration. Never longer than the table.",
                             render_kw={"inputmode": "numeric"})
    bud_reason = TextAreaField("Reason for the shorter duration", validators=[Optional(), Length(max=REASON_MAX)],
                               filters=[_one_newline], render_kw={"rows": 2})
    dose = SelectField("Dose", choices=choices(DOSE_CHOICES), default="single")
    in_use_period = IntegerField("In-use period after first puncture",
                                 description=f"Multiple-dose only: at most {MAX_IN_USE_HOURS // 24} days "
                                             f"({MAX_IN_USE_HOURS} hours), never beyond the batch's BUD.",
                                 render_kw={"inputmode": "numeric", "min": 1})
    in_use_unit = SelectField("Unit of the in-use period", choices=choices(IN_USE_UNITS), default="days")
    antimicrobial_evidence = TextAreaField(
        "Antimicrobial-effectiveness evidence (USP <51>)", validators=[Optional(), Length(max=NOTE_MAX)],
        filters=[_one_newline], render_kw={"rows": 2},
        description="Required for multiple-dose: the test report that shows the preservative works.")
    components = FieldList(FormField(ComponentForm), min_entries=COMPONENT_ROWS,
                           max_entries=MAX_COMPONENT_ROWS)

    def validate_in_use_period(self, field):
        if self.dose.data != "multiple" or field.errors:
            return
        if field.data is None:
            raise ValidationError("A multiple-dose vial needs its in-use period after first puncture.")
        limit = MAX_IN_USE_HOURS // HOURS_PER.get(self.in_use_unit.data, 1)
        if not 1 <= field.data <= limit:
            raise ValidationError(f"Enter 1 to {limit} {self.in_use_unit.data} ({MAX_IN_USE_HOURS // 24} days, "
                                  f"{MAX_IN_USE_HOURS} hours at most).")

    def in_use_period_hours(self) -> int | None:
        if self.dose.data != "multiple" or self.in_use_period.data is None:
            return None
        return self.in_use_period.data * HOURS_PER.get(self.in_use_unit.data, 1)

    def set_ingredient_choices(self, ingredient_choices) -> None:
        for row in self.components:
            row.ingredient_id.choices = ingredient_choices

    def data_for_service(self) -> dict:
        data = {
            "name": self.name.data, "indication": self.indication.data, "route": self.route.data,
            "dosage_form": self.dosage_form.data, "unit_label": self.unit_label.data,
            "unit_volume_ml": self.unit_volume_ml.parsed, "instructions": self.instructions.data,
            "storage": self.storage.data, "protect_from_light": self.protect_from_light.data,
            "bud_category": self.bud_category.data, "bud_hours": self.bud_hours.data,
            "bud_reason": self.bud_reason.data, "dose": self.dose.data, "in_use_hours": self.in_use_period_hours(),
            "antimicrobial_evidence": self.antimicrobial_evidence.data or "",
            "components": [{"ingredient_id": row.ingredient_id.data, "quantity": row.quantity.parsed,
                            "qs": row.qs.data} for row in self.components if not row.form.is_blank],
        }
        if "code" in self:
            data["code"] = self.code.data
        return data


class NewFormulaForm(FormulaForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=FORMULA_CODE_MAX)],
                       filters=[lambda v: v.strip().upper() if isinstance(v, str) else v],
                       description="Capitals, digits and dashes, e.g. LIPO-PCDC. Kept by every version.")


class RetireForm(AppForm):
    reason = reason_field()


class NewVersionForm(AppForm):
    """Only the CSRF token: starting a new version needs nothing else."""
