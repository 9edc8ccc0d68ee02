"""Command-line tasks for equipment: register a piece, record its calibration (the operator, no account)."""

import sys

import click

from ..models.equipment import CALIBRATION_RESULTS, EQUIPMENT_KINDS
from ..services import equipment, sites
from ..services.errors import DomainError

DAY = click.DateTime(formats=["%Y-%m-%d"])


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


@click.command("create-equipment")
@click.argument("code")
@click.option("--kind", type=click.Choice(EQUIPMENT_KINDS), required=True)
@click.option("--due-on", type=DAY, required=True, metavar="YYYY-MM-DD",
              help="When its calibration or certification is due (usable until that day included).")
@click.option("--site", "site_code", default="MAIN", show_default=True, metavar="CODE")
@click.option("--name", default="", help="Default: the code.")
@click.option("--serial-number", default="")
def create_equipment_command(code, kind, due_on, site_code, name, serial_number):
    """Register a balance, pipette, hood, thermometer or data logger at a site."""
    try:
        site = sites.site_by_code(site_code)
        item = equipment.create_equipment(None, code=code, kind=kind, name=name, due_on=due_on.date(),
                                          site_id=site.id, serial_number=serial_number)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(f"Registered {item.code} ({item.name}, {item.kind}) at site {site.code}; "
               f"due {item.due_on.isoformat()}.")


@click.command("record-calibration")
@click.argument("code")
@click.option("--performed-on", type=DAY, required=True, metavar="YYYY-MM-DD")
@click.option("--result", type=click.Choice(CALIBRATION_RESULTS), required=True)
@click.option("--next-due-on", type=DAY, default=None, metavar="YYYY-MM-DD", help="Required for a pass.")
@click.option("--performed-by", default="")
@click.option("--certificate-number", default="")
@click.option("--note", default="")
def record_calibration_command(code, performed_on, result, next_due_on, performed_by, certificate_number, note):
    """Record a calibration or certification of the equipment CODE (a fail takes it out of service)."""
    item = equipment.find_by_code(code)
    if item is None:
        _fail(f"There is no equipment {code!r}.")
    try:
        equipment.record_calibration(None, item.id, performed_on=performed_on.date(), result=result,
                                     next_due_on=next_due_on.date() if next_due_on else None,
                                     performed_by=performed_by, certificate_number=certificate_number, note=note)
    except DomainError as exc:
        _fail(exc.message)
    if result == "pass":
        click.echo(f"Calibration of {item.code} recorded (pass); next due {item.due_on.isoformat()}.")
    else:
        click.echo(f"Calibration of {item.code} recorded (fail); it is out of service until a passing one.")
