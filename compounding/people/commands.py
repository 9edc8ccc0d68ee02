"""Command-line tasks for qualifications: record a result (the operator, no account), list who is due."""

import sys

import click
import sqlalchemy as sa

from ..extensions import db
from ..models import User
from ..models.people import QUALIFICATION_RESULTS
from ..queries.people import DUE_WITHIN_MAX, TeamFilters, is_due, team_standings
from ..services import qualifications
from ..services.bounds import DAY_MESSAGE, day_in_range
from ..services.errors import DomainError


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


def _user_named(username: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.username == username.strip().lower()))
    if user is None:
        _fail(f"No user named {username!r}.")
    return user


DAY = click.DateTime(formats=["%Y-%m-%d"])


@click.command("record-qualification")
@click.argument("username")
@click.argument("kind")
@click.option("--passed-on", required=True, type=DAY, help="The day of the test or assessment, YYYY-MM-DD.")
@click.option("--result", required=True, type=click.Choice(QUALIFICATION_RESULTS))
@click.option("--cfu", type=click.IntRange(0, qualifications.CFU_MAX), default=None,
              help="Colony-forming units counted (gloved fingertip sampling).")
@click.option("--valid-until", type=DAY, default=None, help="A pass's last valid day (default: the kind's interval).")
@click.option("--assessor", default="", help="Who assessed it.")
@click.option("--note", default="")
def record_qualification_command(username, kind, passed_on, result, cfu, valid_until, assessor, note):
    """Record a qualification result of USERNAME in KIND (hand_hygiene_garbing, gloved_fingertip, media_fill, or
    a kind an admin added), then print their standing."""
    user = _user_named(username)
    days = [day.date() if day else None for day in (passed_on, valid_until)]
    if not all(day_in_range(day) for day in days if day):
        _fail(DAY_MESSAGE)
    try:
        record = qualifications.record_qualification(
            None, user_id=user.id, kind=kind.strip().lower(), passed_on=days[0], result=result, cfu=cfu,
            valid_until=days[1], assessor=assessor, note=note)
    except DomainError as exc:
        _fail(exc.message)
    until = f", valid until {record.valid_until.isoformat()}" if record.valid_until else ""
    click.echo(f"Recorded {kind.strip().lower()} {result} on {record.passed_on.isoformat()}{until} for "
               f"{user.username} ({user.display_name}).")
    for standing in qualifications.standings(user.id):
        click.echo(f"  {'ok ' if standing.usable else 'NO '} {standing.text}")


@click.command("qualifications")
@click.option("--due-within", type=click.IntRange(0, DUE_WITHIN_MAX), default=qualifications.DUE_SOON_DAYS,
              show_default=True, help="Days: list whoever has a qualification ending by then (or lapsed, failed, "
                                      "incomplete or missing).")
def qualifications_command(due_within):
    """List who compounds or verifies, at every site, with a qualification due: what is due and since when."""
    kinds, rows = team_standings(TeamFilters(due=True), site_ids=None, due_days=due_within)
    for row in rows:
        due = [s.text for kind, s in zip(kinds, row.standings, strict=True) if is_due(kind, s)]
        click.echo(f"{row.user.username} ({row.user.display_name}, {row.user.role}): {'; '.join(due)}")
    click.echo(f"{len(rows)} {'person' if len(rows) == 1 else 'people'} due within {due_within} days.")
