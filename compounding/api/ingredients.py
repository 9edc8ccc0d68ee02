"""API: ingredients."""

import sqlalchemy as sa

from ..models import Ingredient
from .schemas import IngredientSchema
from .views import paginated, route


@route("/ingredients", permission="ingredients.read", summary="List ingredients",
       response=IngredientSchema, many=True)
def ingredient_list():
    return paginated(sa.select(Ingredient).order_by(Ingredient.name), IngredientSchema)
