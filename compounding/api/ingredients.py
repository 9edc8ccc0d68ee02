"""API: ingredients, with their released, unexpired stock on hand."""

from flask import jsonify, request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..extensions import db
from ..models import Ingredient
from ..pagination import paginate_rows, per_page_arg
from ..queries.ingredients import IngredientFilters, ingredient_overview_query, ingredient_row_query
from ..services import ingredients
from .schemas.ingredients import IngredientQuerySchema, IngredientSchema, IngredientUpdateSchema
from .scope import list_scope
from .views import answer_one, json_body, load, page_answer, route

_STOCK_FIGURES = ("on_hand", "nearest_expiry", "below_reorder")


def _dump(row) -> dict:
    """One ingredient_overview_query row: the ingredient, then its stock figures."""
    return {**IngredientSchema(exclude=_STOCK_FIGURES).dump(row[0]),
            **IngredientSchema(only=_STOCK_FIGURES).dump(row)}


def _answer(ingredient_id: int, status: int = 200):
    # The ingredient is the chain's; its stock figures are those of the caller's sites.
    return answer_one(ingredient_row_query(ingredient_id, site_ids=list_scope()), _dump, status)


@route("/ingredients", permission="ingredients.read", summary="List ingredients with stock on hand",
       response=IngredientSchema, many=True, query=IngredientQuerySchema, errors=(422,))
def ingredient_list():
    args = load(IngredientQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    query = ingredient_overview_query(IngredientFilters(q=args["q"].strip(), below_reorder=args["below_reorder"],
                                                        include_inactive=args["include_inactive"]),
                                      site_ids=list_scope())
    # The rows carry computed columns, so db.paginate (entities only) cannot page them.
    pagination = paginate_rows(query, per_page=per_page_arg())
    return jsonify(page_answer([_dump(row) for row in pagination.items], pagination))


@route("/ingredients", "POST", permission="ingredients.write", summary="Create an ingredient",
       body=IngredientSchema, response=IngredientSchema, status=201, errors=(409,))
def ingredient_create():
    data = load(IngredientSchema, json_body())
    data["gtins"] = data.pop("gtin_list")
    ingredient = ingredients.create_ingredient(current_user, data)
    return _answer(ingredient.id, 201)


@route("/ingredients/<int:ingredient_id>", permission="ingredients.read", summary="One ingredient",
       response=IngredientSchema)
def ingredient_detail(ingredient_id: int):
    return _answer(ingredient_id)


@route("/ingredients/<int:ingredient_id>", "PATCH", permission="ingredients.write",
       summary="Change some fields of an ingredient", body=IngredientUpdateSchema,
       response=IngredientSchema, errors=(409,))
def ingredient_update(ingredient_id: int):
    ingredient = db.get_or_404(Ingredient, ingredient_id)
    changes = load(IngredientUpdateSchema, json_body())
    data = {"name": ingredient.name, "kind": ingredient.kind, "unit": ingredient.unit,
            "strength": ingredient.strength, "storage": ingredient.storage,
            "gtins": ingredient.gtin_list, "reorder_level": ingredient.reorder_level,
            "active": ingredient.active, **changes}
    ingredients.update_ingredient(current_user, ingredient, data)
    return _answer(ingredient_id)
