"""API: ingredients, with their released, unexpired stock on hand."""

import sqlalchemy as sa
from flask import abort, jsonify, request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..extensions import db
from ..models import Ingredient
from ..pagination import page_arg
from ..services import inventory
from ..services.stock_queries import ingredient_overview_query
from .schemas import IngredientQuerySchema, IngredientSchema, IngredientUpdateSchema
from .views import json_body, load, route

_STOCK_FIGURES = ("on_hand", "nearest_expiry", "below_reorder")


def _dump(row) -> dict:
    """One ingredient_overview_query row: the ingredient, then its stock figures."""
    return {**IngredientSchema(exclude=_STOCK_FIGURES).dump(row[0]),
            **IngredientSchema(only=_STOCK_FIGURES).dump(row)}


def _answer(ingredient_id: int, status: int = 200):
    row = db.session.execute(
        ingredient_overview_query(include_inactive=True).where(Ingredient.id == ingredient_id)
    ).first()
    if row is None:
        abort(404)
    response = jsonify(_dump(row))
    response.status_code = status
    return response


@route("/ingredients", permission="ingredients.read", summary="List ingredients with stock on hand",
       response=IngredientSchema, many=True, query=IngredientQuerySchema, errors=(422,))
def ingredient_list():
    args = load(IngredientQuerySchema, request.args.to_dict(), unknown=EXCLUDE)
    query = ingredient_overview_query(args["q"].strip(), args["below_reorder"], args["include_inactive"])
    # The rows carry computed columns, so db.paginate (entities only) cannot page them.
    page = page_arg()
    per_page = min(max(request.args.get("per_page", 50, type=int) or 50, 1), 200)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.limit(per_page).offset((page - 1) * per_page)).all()
    return jsonify({"items": [_dump(row) for row in rows], "page": page, "per_page": per_page,
                    "total": total})


@route("/ingredients", "POST", permission="ingredients.write", summary="Create an ingredient",
       body=IngredientSchema, response=IngredientSchema, status=201, errors=(409,))
def ingredient_create():
    data = load(IngredientSchema, json_body())
    data["gtins"] = data.pop("gtin_list")
    ingredient = inventory.create_ingredient(current_user, data)
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
    inventory.update_ingredient(current_user, ingredient, data)
    return _answer(ingredient_id)
