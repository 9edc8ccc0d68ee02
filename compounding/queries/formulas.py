"""Formulas: the list and its filters (page and API), one version's page."""

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import aliased, raiseload, selectinload

from ..extensions import db
from ..models import Formula, FormulaComponent, Ingredient, User
from ..models.formula import FORMULA_STATUSES, INDICATIONS
from .audit import audit_history
from .common import search_arg


@dataclass
class FormulaFilters:
    status: str = ""
    indication: str = ""
    code: str = ""  # a formula code, every version (the API only)
    q: str = ""  # part of the code or name
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "FormulaFilters":
        """The list page's query string: an unknown status or indication is no filter."""
        errors: dict[str, str] = {}
        return cls(status=args.get("status", "") if args.get("status") in FORMULA_STATUSES else "",
                   indication=args.get("indication", "") if args.get("indication") in INDICATIONS else "",
                   q=search_arg(args, errors), errors=errors)


def filter_formulas(query, filters: FormulaFilters):
    """`query` (of formulas) under the filters, by code and newest version first."""
    if filters.status:
        query = query.where(Formula.status == filters.status)
    if filters.indication:
        query = query.where(Formula.indication == filters.indication)
    if filters.code:
        query = query.where(Formula.code == filters.code.strip().upper())
    if filters.q:
        query = query.where(sa.or_(Formula.code.icontains(filters.q, autoescape=True),
                                   Formula.name.icontains(filters.q, autoescape=True)))
    return query.order_by(Formula.code, Formula.version.desc())


def formula_list_query(filters: FormulaFilters):
    """The list page's rows: each version with its approver's name (components are not read)."""
    return filter_formulas(sa.select(Formula, User.display_name.label("approved_by"))
                           .outerjoin(User, User.id == Formula.approved_by_id)
                           .options(raiseload(Formula.components)), filters)


def formulas_with_people():
    """Formulas with their authors' and approvers' names and their components, in fixed statements (the API)."""
    creator, approver = aliased(User), aliased(User)
    return (
        sa.select(Formula, creator.display_name.label("created_by"), approver.display_name.label("approved_by"))
        .join(creator, creator.id == Formula.created_by_id)
        .outerjoin(approver, approver.id == Formula.approved_by_id)
        .options(selectinload(Formula.components).joinedload(FormulaComponent.ingredient)
                 .raiseload(Ingredient.gtins))
    )


@dataclass
class FormulaRecord:
    """What a formula version's page shows beside its forms."""

    formula: Formula
    people: dict  # user id -> name, of its author and approver
    versions: list  # the other versions of its code, newest first
    history: list


def formula_record(formula_id: int) -> FormulaRecord | None:
    formula = db.session.get(Formula, formula_id)
    if formula is None:
        return None
    people = dict(db.session.execute(sa.select(User.id, User.display_name).where(
        User.id.in_({formula.created_by_id, formula.approved_by_id} - {None}))).all())
    versions = db.session.execute(
        sa.select(Formula.id, Formula.version, Formula.status, Formula.approved_at)
        .where(Formula.code == formula.code, Formula.id != formula.id)
        .order_by(Formula.version.desc())).all()
    return FormulaRecord(formula=formula, people=people, versions=versions,
                         history=audit_history("formula", formula.id))
