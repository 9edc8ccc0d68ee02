"""Cold chain pages: a location's month report (time in range, chart, Excel) on views.bp."""

from io import BytesIO

from flask import abort, current_app, render_template, request, send_file, url_for
from flask_login import current_user

from ..charts import temperature_chart
from ..queries.cold_chain import month_report, parse_month, report_location
from ..security import requires
from ..services import sites
from ..services.cold_chain import range_text
from ..services.errors import InvalidInput
from ..workbooks import XLSX_MIMETYPE
from ..workbooks.cold_chain import month_workbook
from .views import bp


def _report(location_id: int):
    """The month asked for (`?month=YYYY-MM`, default the current month in the site's zone) of a location at
    one of the viewer's sites (404 otherwise, as for a location that does not exist; 400 for a bad month)."""
    # Every site the viewer may see, whatever the switcher shows: a record outside them is not found.
    site_ids = sites.visible_site_ids(current_user)
    location = report_location(location_id, site_ids=site_ids)
    try:
        year, month = parse_month(request.args.get("month"), location.zone)
    except InvalidInput as exc:
        abort(400, exc.message)
    return month_report(location_id, year, month, site_ids=site_ids)


@bp.route("/cold-chain/locations/<int:location_id>/report")
@requires("coldchain.read")
def report(location_id: int):
    found = _report(location_id)

    def month_url(year_month: tuple[int, int]) -> str:
        return url_for("cold_chain.report", location_id=location_id, month="{:04d}-{:02d}".format(*year_month))

    return render_template("cold_chain/report.html", report=found, location=found.location,
                           chart=temperature_chart(found), range_text=range_text,
                           previous_url=month_url(found.previous), next_url=month_url(found.next),
                           xlsx_url=url_for("cold_chain.report_xlsx", location_id=location_id, month=found.label))


# Exactly the permission of the page that offers it; no patient data, so no access-log row.
@bp.route("/cold-chain/locations/<int:location_id>/report.xlsx")
@requires("coldchain.read")
def report_xlsx(location_id: int):
    found = _report(location_id)
    generated_by = f"{current_user.display_name} ({current_user.role})"
    # A month is a few thousand rows (~150 kB): built in memory, streamed by the write-only sheets.
    out = BytesIO()
    month_workbook(out, found, generated_by=generated_by, clinic_name=current_app.config["CLINIC_NAME"])
    out.seek(0)
    response = send_file(out, mimetype=XLSX_MIMETYPE, as_attachment=True,
                         download_name=f"temperatures-{found.location.code}-{found.label}.xlsx")
    response.headers["Cache-Control"] = "private, no-store"
    return response
