"""API: formulas, from draft to e-signed approval, new versions and retirement."""

from flask import jsonify, request
from flask_login import current_user
from marshmallow import EXCLUDE

from ..models import Formula
from ..pagination import paginate_rows, per_page_arg
from ..queries.formulas import FormulaFilters, filter_formulas, formulas_with_people
from ..services import formulas
from .schemas.formulas import (
    FormulaApproveSchema,
    FormulaCreateSchema,
    FormulaQuerySchema,
    FormulaRetireSchema,
    FormulaSchema,
    FormulaUpdateSchema,
)
from .views import answer_one, json_body, load, page_answer, record_action, route

_NAMES = ("created_by", "approved_by")


def _dump(row) -> dict:
    return {**FormulaSchema(exclude=_NAMES).dump(row[0]), **FormulaSchema(only=_NAMES).dump(row)}


def _answer(formula_id: int, status: int = 200):
    return answer_one(formulas_with_people().where(Formula.id == formula_id), _dump, status)


@route("/formulas", permission="formulas.read", summary="List formula versions, filtered",
       response=FormulaSchema, many=True, query=FormulaQuerySchema, errors=(422,))
def formula_list():
    filters = FormulaFilters(**load(FormulaQuerySchema, request.args.to_dict(), unknown=EXCLUDE))
    pagination = paginate_rows(filter_formulas(formulas_with_people(), filters), per_page=per_page_arg())
    return jsonify(page_answer([_dump(row) for row in pagination.items], pagination))


@route("/formulas", "POST", permission="formulas.write", summary="Create version 1 of a formula as a draft",
       body=FormulaCreateSchema, response=FormulaSchema, status=201, errors=(409,))
def formula_create():
    formula = formulas.create_formula(current_user, load(FormulaCreateSchema, json_body()))
    return _answer(formula.id, 201)


@route("/formulas/<int:formula_id>", permission="formulas.read", summary="One formula version",
       response=FormulaSchema)
def formula_detail(formula_id: int):
    return _answer(formula_id)


@route("/formulas/<int:formula_id>", "PATCH", permission="formulas.write",
       summary="Change some fields of a draft (an approved version is never edited)",
       body=FormulaUpdateSchema, response=FormulaSchema, errors=(409,))
def formula_update(formula_id: int):
    changes = load(FormulaUpdateSchema, json_body())
    formula = formulas.get_formula(formula_id)
    current = {key: getattr(formula, key) for key in formulas.FORMULA_FIELDS}
    current["components"] = [{"ingredient_id": c.ingredient_id, "quantity": c.quantity, "qs": c.qs}
                             for c in formula.components]
    formulas.update_draft(current_user, formula_id, {**current, **changes})
    return _answer(formula_id)


@record_action("/formulas/<int:formula_id>/approve", permission="formulas.approve",
               summary="Approve a draft (e-signature: the pharmacist's password); it replaces the approved version",
               body=FormulaApproveSchema, response=FormulaSchema, answer_with=_answer)
def formula_approve(formula_id: int, data: dict):
    formulas.approve_formula(current_user, formula_id, data["password"])


@route("/formulas/<int:formula_id>/versions", "POST", permission="formulas.write",
       summary="Start the next version as a draft copy of an approved or retired one",
       response=FormulaSchema, status=201, errors=(409,))
def formula_new_version(formula_id: int):
    draft = formulas.new_version(current_user, formula_id)
    return _answer(draft.id, 201)


@record_action("/formulas/<int:formula_id>/retire", permission="formulas.write",
               summary="Retire a version with a reason; batches made from it keep pointing to it",
               body=FormulaRetireSchema, response=FormulaSchema, answer_with=_answer)
def formula_retire(formula_id: int, data: dict):
    formulas.retire_formula(current_user, formula_id, data["reason"])
