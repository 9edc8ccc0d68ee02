"""Ingredient list, detail, create and edit."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import db
from ..forms import apply_domain_error
from ..models import Ingredient, Lot
from ..pagination import filter_status, paginate_entities, paginate_rows
from ..queries.ingredients import IngredientFilters, ingredient_overview_query, ingredient_row_query
from ..queries.lots import LotFilters, lot_list_query
from ..queries.scope import shown_sites
from ..security import requires
from ..services import ingredients
from ..services.errors import DomainError
from ..site_scope import current_scope
from .forms import IngredientForm

bp = Blueprint("ingredients", __name__, url_prefix="/ingredients")


@bp.route("/")
@requires("ingredients.read")
def ingredient_list():
    filters = IngredientFilters.from_args(request.args)
    status = filter_status(filters.errors)
    pagination = paginate_rows(ingredient_overview_query(filters, site_ids=current_scope()))
    return render_template("ingredients/list.html", pagination=pagination, search=filters.q,
                           below=filters.below_reorder, inactive=filters.include_inactive), status


@bp.route("/new", methods=["GET", "POST"])
@requires("ingredients.write")
def ingredient_create():
    form = IngredientForm()
    if form.validate_on_submit():
        try:
            ingredient = ingredients.create_ingredient(current_user, form.data_for_service())
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"{ingredient.name} added.", "success")
            return redirect(url_for("ingredients.ingredient_detail", ingredient_id=ingredient.id))
    return render_template("ingredients/form.html", form=form, ingredient=None), 422 if form.errors else 200


# An ingredient's page lists its lots below the ingredient itself: a shorter page than the lot list.
INGREDIENT_LOTS_PER_PAGE = 25


@bp.route("/<int:ingredient_id>")
@requires("ingredients.read")
def ingredient_detail(ingredient_id: int):
    ingredient = db.get_or_404(Ingredient, ingredient_id)
    scope = current_scope()
    overview = db.session.execute(ingredient_row_query(ingredient_id, site_ids=scope)).one()
    lots = paginate_entities(lot_list_query(LotFilters(ingredient_id=ingredient_id, sort="-received"),
                                            site_ids=scope), Lot.id, per_page=INGREDIENT_LOTS_PER_PAGE)
    return render_template("ingredients/detail.html", ingredient=ingredient, overview=overview,
                           lots=lots, row_sites=shown_sites(scope))


@bp.route("/<int:ingredient_id>/edit", methods=["GET", "POST"])
@requires("ingredients.write")
def ingredient_edit(ingredient_id: int):
    ingredient = db.get_or_404(Ingredient, ingredient_id)
    form = IngredientForm(obj=ingredient)
    if request.method == "GET":
        form.gtins.data = "\n".join(ingredient.gtin_list)
    if form.validate_on_submit():
        try:
            ingredients.update_ingredient(current_user, ingredient, form.data_for_service())
        except DomainError as exc:
            apply_domain_error(form, exc)
        else:
            flash(f"{ingredient.name} saved.", "success")
            return redirect(url_for("ingredients.ingredient_detail", ingredient_id=ingredient.id))
    status = 422 if form.errors else 200
    return render_template("ingredients/form.html", form=form, ingredient=ingredient), status
