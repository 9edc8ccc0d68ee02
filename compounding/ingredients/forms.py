"""Ingredient form (shape only; uniqueness and GTIN ownership are checked by the service)."""

from wtforms import BooleanField, DecimalField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..forms import AppForm, Between, choices
from ..limits import LABEL_MAX, NAME_MAX
from ..models.ingredient import INGREDIENT_KINDS, STOCK_UNITS, STORAGE_CONDITIONS


class IngredientForm(AppForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX)])
    kind = SelectField("Kind", choices=choices(INGREDIENT_KINDS))
    unit = SelectField("Stock unit", choices=choices(STOCK_UNITS))
    strength = StringField("Strength", validators=[Optional(), Length(max=LABEL_MAX)],
                           description='As on the container, e.g. "50 mg/mL".')
    storage = SelectField("Storage temperature", choices=choices(STORAGE_CONDITIONS))
    # Yes/no attributes: their meaning is in the label (the form macro shows no help beside a checkbox).
    protect_from_light = BooleanField("Protect from light")
    sterile = BooleanField("Supplied sterile (categories that allow only sterile starting components check it)")
    vehicle = BooleanField("Pure vehicle, e.g. water for injection or sodium chloride 0.9 % "
                           "(not named on labels as a drug)")
    reorder_level = DecimalField("Reorder level", places=3, default=0,
                                 validators=[Optional(), Between(0, 99999999999, "Enter a number of zero or more.")],
                                 description="Flagged when released stock falls below this.")
    gtins = TextAreaField("GTINs", validators=[Optional(), Length(max=1000)],
                          description="Supplier barcodes (GTIN-8/12/13/14), one per line.",
                          render_kw={"rows": 3})
    active = BooleanField("Active (can be received)", default=True)

    def data_for_service(self) -> dict:
        return {
            "name": self.name.data, "kind": self.kind.data, "unit": self.unit.data,
            "strength": self.strength.data, "storage": self.storage.data,
            "protect_from_light": self.protect_from_light.data, "sterile": self.sterile.data,
            "vehicle": self.vehicle.data,
            "reorder_level": self.reorder_level.data or 0,
            "gtins": (self.gtins.data or "").replace(",", "\n").splitlines(),
            "active": self.active.data,
        }
