"""Qualifications and equipment of the synthetic chain (DESIGN 10.6), written with the bulk rows.

Every scale account that compounds or verifies gets each required kind passed every six months over
the data set's years (gloved fingertip: its initial series of three zero-CFU passes first), so the
seeded staff may compound today; one site in seven has its pharmacist's media fill lapsed and one in
five due within the month, for the dashboards and the team page. Every site gets a balance and a hood
calibrated yearly (usable), a pipette (due within the month on one site in five) and a thermometer
(overdue on one site in ten). Idempotent: people and codes already there are left alone.
"""

from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ..models import Calibration, Equipment, Qualification, QualificationKind, Site, User
from ..services.qualifications import add_months
from .spec import YEARS
from .writer import Writer, reserve_ids

# code prefix, kind, name, days until due (site index -> days), years of yearly calibrations
EQUIPMENT = (("BAL", "balance", "Analytical balance 0.1 mg"), ("HOOD", "hood", "Laminar-flow hood ISO 5"),
             ("PIP", "pipette", "Pipette 100-1000 µL"), ("THERM", "thermometer", "Min/max thermometer"))


def _due_in_days(prefix: str, index: int) -> int:
    if prefix == "PIP" and index % 5 == 4:
        return 12
    if prefix == "THERM" and index % 10 == 9:
        return -4
    return 120 + (index * 7) % 180


def write_people(writer: Writer, now: datetime, log) -> dict:
    connection = writer.connection
    today = now.date()
    seconds = int(now.timestamp())
    kinds = connection.execute(sa.select(QualificationKind.id, QualificationKind.code, QualificationKind.initial_passes,
                                         QualificationKind.counts_cfu, QualificationKind.valid_months)
                               .where(QualificationKind.active, QualificationKind.required)).all()
    done = set(connection.scalars(sa.select(Qualification.user_id).distinct()))
    staff = connection.execute(sa.select(User.id, User.username).where(
        User.username.like("scale.%"), User.role.in_(("pharmacist", "technician")))
        .order_by(User.id)).all()
    rows = []
    for n, person in enumerate(p for p in staff if p.id not in done):
        lapsed = n % 7 == 6
        due_soon = n % 5 == 4
        start = today - timedelta(days=365 * YEARS)
        for kind in kinds:
            day = start
            for step in range(kind.initial_passes - 1):
                rows.append(_row(person.id, kind, day + timedelta(days=step), now))
            day += timedelta(days=kind.initial_passes - 1)
            last = today - timedelta(days=30 + n % 60)
            if kind.code == "media_fill" and lapsed:
                last = add_months(today, -kind.valid_months) - timedelta(days=10)
            elif kind.code == "media_fill" and due_soon:
                last = add_months(today, -kind.valid_months) + timedelta(days=15)
            while day < last:
                rows.append(_row(person.id, kind, day, now))
                day = add_months(day, kind.valid_months) - timedelta(days=7)
            rows.append(_row(person.id, kind, last, now))
    if rows:
        first = reserve_ids(connection, {Qualification.__table__: len(rows)})["qualifications"]
        for offset, row in enumerate(rows):
            row["id"] = first + offset
        writer.insert(Qualification.__table__, rows)
        log.add(seconds, None, "scale.qualifications_loaded", "scale", None, new={"rows": len(rows)})
    equipment, calibrations = _equipment(connection, today, now)
    if equipment:
        first = reserve_ids(connection, {Equipment.__table__: len(equipment)})["equipment"]
        for offset, row in enumerate(equipment):
            row["id"] = first + offset
        writer.insert(Equipment.__table__, equipment)
        cal_rows = []
        for offset, history in enumerate(calibrations):
            for row in history:
                cal_rows.append({**row, "equipment_id": first + offset})
        first_cal = reserve_ids(connection, {Calibration.__table__: len(cal_rows)})["calibrations"]
        for offset, row in enumerate(cal_rows):
            row["id"] = first_cal + offset
        writer.insert(Calibration.__table__, cal_rows)
        log.add(seconds, None, "scale.equipment_loaded", "scale", None,
                new={"equipment": len(equipment), "calibrations": len(cal_rows)})
    return {"qualifications": len(rows), "equipment": len(equipment)}


def _row(user_id: int, kind, day: date, now: datetime) -> dict:
    return {"user_id": user_id, "kind_id": kind.id, "passed_on": day, "result": "pass",
            "cfu": 0 if kind.counts_cfu else None, "valid_until": add_months(day, kind.valid_months),
            "assessor": "Scale QA", "note": "", "recorded_by_id": None, "recorded_at": now, "voided_at": None,
            "voided_by_id": None, "void_reason": ""}


def _equipment(connection, today: date, now: datetime) -> tuple[list[dict], list[list[dict]]]:
    sites = connection.execute(sa.select(Site.id, Site.code).order_by(Site.id)).all()
    taken = set(connection.scalars(sa.select(Equipment.code)))
    equipment, calibrations = [], []
    for index, site in enumerate(sites):
        for prefix, kind, name in EQUIPMENT:
            code = f"{prefix}-{site.code}"
            if code in taken:
                continue
            due = today + timedelta(days=_due_in_days(prefix, index))
            equipment.append({"code": code, "kind": kind, "name": name, "serial_number": f"SN-{code}",
                              "site_id": site.id, "due_on": due, "out_of_service": False, "active": True,
                              "created_at": now - timedelta(days=365 * YEARS), "created_by_id": None})
            history = []
            for year in range(YEARS, 0, -1):
                performed = due - timedelta(days=365 * year)
                history.append({"performed_on": performed, "result": "pass",
                                "next_due_on": due - timedelta(days=365 * (year - 1)),
                                "performed_by": "Scale Metrology", "certificate_number": f"CAL-{code}-{year}",
                                "note": "", "recorded_by_id": None, "recorded_at": now})
            calibrations.append([h for h in history if h["performed_on"] <= today])
    return equipment, calibrations
