"""Where the new rows continue (codes, chart numbers, the chain's last hash), and the counters after them."""

from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from ..models import AuditEvent, Batch, CodeCounter, Lot, Patient
from ..services import audit
from ..services.clock import clinic_zone
from .plan import Plan
from .spec import moment
from .writer import in_chunks


@dataclass
class Start:
    """Where the new rows continue: next ids, code numbers, chart numbers, the chain's last hash."""

    lot_number: int
    batch_day_counters: dict
    chart_number: int
    last_hash: str


def find_start(connection: sa.Connection) -> Start:
    counters = dict(connection.execute(sa.select(CodeCounter.key, CodeCounter.value)).all())
    # Codes grow past their 6 digits, so the highest is the longest first: "L999999" < "L1000000".
    highest_lot = connection.scalar(sa.select(Lot.code).where(Lot.code.like("L%"))
                                    .order_by(sa.func.length(Lot.code).desc(), Lot.code.desc()).limit(1)) or "L0"
    lot_number = max(counters.get("lot", 0), int(highest_lot[1:] or 0)) + 1
    day_counters = defaultdict(int, {k[5:]: v for k, v in counters.items() if k.startswith("batch")})
    for code in connection.scalars(sa.select(Batch.code)):
        if len(code) >= 11 and code[1:].isdigit():
            day_counters[code[1:7]] = max(day_counters[code[1:7]], int(code[7:]))
    highest_chart = connection.scalar(sa.select(sa.func.max(Patient.chart_number))
                                      .where(Patient.chart_number.like("SC_______"))) or "SC0000000"
    last_hash = connection.scalar(sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    return Start(lot_number=lot_number, batch_day_counters=day_counters,
                 chart_number=int(highest_chart[2:]) + 1 if highest_chart[2:].isdigit() else 1,
                 last_hash=last_hash or audit.GENESIS_HASH)


def new_batch_codes(plan: Plan, start: Start) -> list[str]:
    zone = clinic_zone()
    codes, counters = [], start.batch_day_counters
    for seconds in plan.b_time.tolist():
        day = moment(seconds).astimezone(zone).strftime("%y%m%d")
        counters[day] += 1
        codes.append(f"B{day}{counters[day]:04d}")
    return codes


def move_counters(connection: sa.Connection, start: Start, lot_codes: list[str]) -> None:
    """Later receipts and batches take the numbers after the ones just used."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    values = {"batch" + day: n for day, n in start.batch_day_counters.items()}
    if lot_codes:
        values["lot"] = int(lot_codes[-1][1:])
    for chunk in in_chunks(values.items(), 500):
        statement = insert(CodeCounter).values([{"key": k, "value": v} for k, v in chunk])
        connection.execute(statement.on_conflict_do_update(
            index_elements=[CodeCounter.key],
            set_={"value": sa.func.max(CodeCounter.value, statement.excluded.value)
                  if connection.dialect.name == "sqlite"
                  else sa.func.greatest(CodeCounter.value, statement.excluded.value)}))
