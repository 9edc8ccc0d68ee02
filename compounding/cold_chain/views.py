"""The cold chain's pages, one module per part, all on this blueprint.

- readings.py: the overview of monitored locations, the reading page by the fridge, a location's log
- excursions.py: excursions, their held stock, the uses to review, the pharmacist's decision
- files.py: a data logger's file, previewed, then imported whole or not at all
- reports.py: a location's month (time in range, chart, Excel)
- sensors.py: a sensor's API token for one location
"""

from flask import Blueprint

bp = Blueprint("cold_chain", __name__)

from . import excursions, files, readings, reports, sensors  # noqa: E402, F401  (each registers its routes)
