"""Synthetic data at scale for benchmarks (`flask seed-scale`): consistent, bulk-inserted.

The few reference rows (accounts, ingredients, formulas) go through the real services. The
bulk (lots, batches, components, patients, sessions, uses, the ledger, signatures, audit rows)
is planned in memory with numpy so that every rule holds, then written in one transaction
with executemany (SQLite) or COPY (PostgreSQL):

- a lot is received, then released, then consumed only by batches compounded while it was
  the current lot of its ingredient (one special "trace" lot feeds ~1,000 batches whose
  ~50,000 uses exercise trace and recall); what is left of an expired lot is written off;
- a batch is verified by a pharmacist other than its compounder; a session uses a batch only
  between its verification and its beyond-use time, never more than the volume left;
- every cached balance equals the sum of its ledger rows, and every ledger row carries the
  running balance; codes continue the counters, which are moved past the new codes;
- audit rows (received and released per lot, compounded and released per batch, one summary
  per bulk table) are appended to the hash chain exactly as services.audit writes it.

Data already in the database is never changed: ids, codes and chart numbers continue after
it. A database holding records not made by seed-demo or seed-scale is refused unless forced.
"""

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import sqlalchemy as sa

from .demo import DEMO_INGREDIENTS, DEMO_USERS
from .extensions import db
from .models import (
    AdverseEvent,
    AuditEvent,
    Batch,
    BatchComponent,
    CodeCounter,
    Formula,
    Ingredient,
    Lot,
    Patient,
    SessionUse,
    Signature,
    StockMovement,
    TreatmentSession,
    User,
)
from .services import audit, formulas, inventory, users
from .services.bud import BUD_TABLE_VERSION, bud_duration
from .services.clock import clinic_today, clinic_zone, utcnow

DEFAULTS = {"lots": 20_000, "batches": 100_000, "sessions": 500_000, "patients": 100_000}
SCALE_PASSWORD = "scale-bench-2026"
SCALE_USERS = [
    ("scale.pharmacist1", "Dr Sam Scale", "pharmacist"),
    ("scale.pharmacist2", "Dr Kim Scale", "pharmacist"),
    ("scale.technician", "Toni Scale", "technician"),
    ("scale.practitioner1", "Dr Ana Scale", "practitioner"),
    ("scale.practitioner2", "Dr Ben Scale", "practitioner"),
    ("scale.practitioner3", "Dr Cleo Scale", "practitioner"),
]
# The lot feeding many batches that the benchmarks trace; its supplier lot number says so.
TRACE_LOT_PREFIX = "SCALE-TRACE-"
TRACE_INGREDIENT = "Sodium chloride 0.9 %"
TRACE_BATCHES, TRACE_USES_PER_BATCH = 1_000, 50
YEARS = 3
CHUNK = 10_000
_INSTRUCTIONS = ("1. Work in the ISO 5 hood. 2. Scan every component lot. 3. Measure each component per unit. "
                 "4. Mix gently, inspect, seal and label. (Synthetic formula for benchmarks.)")
# code, name, indication, route, unit volume mL, storage, BUD category, [(ingredient, mL per unit)], areas
SCALE_FORMULAS = [
    ("SCALE-LIPO", "Scale lipolytic PC/DC 10 mL", "fat_reduction", "subcutaneous", 10, "fridge",
     "category_2_aseptic_sterility_tested",
     [("Phosphatidylcholine", "5"), ("Sodium deoxycholate", "2.5"), ("Sodium chloride 0.9 %", "2.5")],
     ("abdomen", "flanks", "submental", "thighs")),
    ("SCALE-LIPO-LD", "Scale lipolytic with lidocaine 10 mL", "fat_reduction", "subcutaneous", 10, "fridge",
     "category_3_aseptic_tested",
     [("Phosphatidylcholine", "4"), ("Sodium deoxycholate", "2"), ("Lidocaine", "1"),
      ("Sodium chloride 0.9 %", "3")],
     ("abdomen", "flanks", "arms")),
    ("SCALE-MESO", "Scale mesolift vitamin C + HA 5 mL", "skin_rejuvenation", "intradermal", 5, "fridge",
     "category_2_terminal",
     [("Ascorbic acid (vitamin C)", "1"), ("Hyaluronic acid", "2"), ("Lidocaine", "0.5"),
      ("Sodium chloride 0.9 %", "1.5")],
     ("face", "neck", "décolleté", "hands")),
    ("SCALE-HAIR", "Scale hair mix minoxidil + biotin 5 mL", "hair_loss", "intradermal", 5, "room",
     "category_2_terminal_sterility_tested",
     [("Minoxidil", "2"), ("Biotin", "1"), ("Sodium chloride 0.9 %", "2")],
     ("scalp, vertex", "scalp, crown", "scalp, temples")),
]
FORMULA_WEIGHTS = (0.35, 0.15, 0.3, 0.2)
FIRST_NAMES = ("Maria", "Aisha", "Laura", "Chen", "Sophie", "James", "Olivia", "Noah", "Emma", "Liam", "Mia",
               "Lucas", "Zara", "Omar", "Ines", "Hugo", "Yara", "Ravi", "Elena", "Tomas")
LAST_NAMES = ("Gomez", "Rahman", "Bianchi", "Wei", "Martin", "O'Neill", "Smith", "Kowalski", "Haddad", "Costa",
              "Novak", "Dubois", "Silva", "Jensen", "Moreau", "Ivanova", "Okafor", "Tanaka", "Rossi", "Byrne")
EVENT_TYPES = ("redness", "swelling", "bruising", "pain", "nodule", "infection", "allergic_reaction", "necrosis")
EVENT_WEIGHTS = (0.3, 0.25, 0.2, 0.12, 0.08, 0.02, 0.02, 0.01)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, DAY = 3600, 86400


class ForeignData(Exception):
    """The database holds records that seed-demo or seed-scale did not make."""


@dataclass
class Size:
    lots: int
    batches: int
    sessions: int
    patients: int
    seed: int = 1

    @classmethod
    def from_options(cls, scale: float = 1.0, seed: int = 1, **given) -> "Size":
        values = {k: given[k] if given.get(k) is not None else max(1, round(v * scale)) for k, v in DEFAULTS.items()}
        return cls(seed=seed, **values)


@dataclass
class Summary:
    counts: dict = field(default_factory=dict)
    timings: list = field(default_factory=list)
    trace_lot: tuple | None = None  # (id, code, batches, uses)


def _dt(seconds) -> datetime:
    return EPOCH + timedelta(seconds=int(seconds))


def _dec(value, places: int) -> Decimal:
    return Decimal(int(value)).scaleb(-places)


# --- reference rows, through the services ---------------------------------------------------------


def _ensure_reference_rows() -> None:
    """Accounts, the eight demo ingredients and the approved scale formulas (idempotent)."""
    existing = set(db.session.scalars(sa.select(User.username)))
    for username, name, role in SCALE_USERS:
        if username not in existing:
            users.create_user(None, username=username, display_name=name, role=role, password=SCALE_PASSWORD)
    pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
    names = {n.lower() for n in db.session.scalars(sa.select(Ingredient.name))}
    for name, kind, unit, strength, storage, reorder, gtin in DEMO_INGREDIENTS:
        if name.lower() not in names:
            claimed = inventory.ingredient_by_gtin(gtin) is not None
            inventory.create_ingredient(pharmacist, {
                "name": name, "kind": kind, "unit": unit, "strength": strength, "storage": storage,
                "reorder_level": Decimal(reorder), "gtins": [] if claimed else [gtin]})
    ingredient_ids = dict(db.session.execute(sa.select(Ingredient.name, Ingredient.id)).all())
    for code, name, indication, route, volume, storage, category, components, _ in SCALE_FORMULAS:
        if db.session.scalar(sa.select(Formula.id).where(Formula.code == code, Formula.status == "approved")):
            continue
        draft = db.session.scalar(sa.select(Formula).where(Formula.code == code, Formula.status == "draft"))
        if draft is None:
            draft = formulas.create_formula(pharmacist, {
                "code": code, "name": name, "indication": indication, "route": route,
                "dosage_form": "solution for injection", "unit_label": f"vial {volume} mL",
                "unit_volume_ml": volume, "storage": storage, "bud_category": category,
                "instructions": _INSTRUCTIONS,
                "components": [{"ingredient_id": ingredient_ids[i], "quantity": q} for i, q in components]})
        formulas.approve_formula(pharmacist, draft.id, SCALE_PASSWORD)


@dataclass
class Refs:
    users: dict  # username -> (id, display name)
    ingredients: dict  # name -> (id, unit, gtin or None)
    formulas: list  # per SCALE_FORMULAS row: SimpleNamespace


def _load_refs() -> Refs:
    people = {u.username: (u.id, u.display_name) for u in db.session.scalars(
        sa.select(User).where(User.username.in_([u for u, _, _ in SCALE_USERS])))}
    ingredients = {}
    for ingredient in db.session.scalars(sa.select(Ingredient)):
        ingredients[ingredient.name] = (ingredient.id, ingredient.unit, (ingredient.gtin_list or [None])[0])
    rows = []
    for code, _, indication, _, _, _, _, _, areas in SCALE_FORMULAS:
        formula = db.session.scalar(sa.select(Formula).where(Formula.code == code, Formula.status == "approved"))
        duration = bud_duration(formula.bud_category, formula.storage, formula.bud_hours)
        rows.append(SimpleNamespace(
            id=formula.id, label=formula.label, indication=indication.replace("_", " "), areas=areas,
            storage=formula.storage, unit_tenths=int(formula.unit_volume_ml * 10),
            bud_seconds=int(duration.total_seconds()),
            components=[(c.ingredient_id, int(c.quantity * 1000)) for c in formula.components]))
    return Refs(people, ingredients, rows)


def foreign_records() -> int:
    """How many lots, batches, patients and sessions were made by accounts other than the seeds'."""
    seeded = [u for u, _, _ in SCALE_USERS] + [u for u, _, _ in DEMO_USERS]
    ours = sa.select(User.id).where(User.username.in_(seeded))
    return sum(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(column.not_in(ours)))
               for model, column in ((Lot, Lot.received_by_id), (Batch, Batch.compounded_by_id),
                                     (TreatmentSession, TreatmentSession.practitioner_id)))


# --- the plan: every row decided in memory, rules checked by construction ---------------------------


@dataclass
class Start:
    """Where the new rows continue: next ids, code numbers, chart numbers, the chain's last hash."""

    lot_number: int
    batch_day_counters: dict
    chart_number: int
    last_hash: str


class Plan:
    """The synthetic data set as numpy arrays (times in seconds since the epoch, quantities as integers)."""

    def __init__(self, size: Size, refs: Refs, now: datetime):
        self.size, self.refs, self.rng = size, refs, np.random.default_rng(size.seed)
        self.now = int(now.timestamp())
        self.start = self.now - YEARS * 365 * DAY
        self.today = clinic_today(now)
        self._batches()
        self._lots()
        self._uses()
        self._units_and_statuses()
        self._consumption()

    def _batches(self) -> None:
        rng, n = self.rng, self.size.batches
        self.b_time = np.sort(rng.integers(self.start + DAY, self.now - 600, size=n))
        weights = np.array(FORMULA_WEIGHTS[:len(self.refs.formulas)], dtype=float)
        self.b_formula = rng.choice(len(self.refs.formulas), size=n, p=weights / weights.sum())
        self.b_by_pharmacist = rng.random(n) < 0.4  # else the technician compounded it
        self.b_verified = self.b_time + rng.integers(20 * 60, 120 * 60, size=n)
        bud_seconds = np.array([f.bud_seconds for f in self.refs.formulas])
        self.b_bud = self.b_time + bud_seconds[self.b_formula]
        # Recent batches still await verification; about 1 % were rejected by the verifier.
        self.b_prepared = (self.b_verified > self.now) | (self.b_time > self.now - 12 * HOUR)
        self.b_rejected = ~self.b_prepared & (rng.random(n) < 0.01)
        self.b_eligible = ~self.b_prepared & ~self.b_rejected
        self.w_start = self.b_verified + 300
        self.w_end = np.minimum(self.b_bud, self.now) - HOUR
        self.b_eligible &= self.w_end > self.w_start

    def _lots(self) -> None:
        """Lots per ingredient over time; each is "current" from its release until the next one's."""
        rng, refs = self.rng, self.refs
        used = defaultdict(int)
        for f in refs.formulas:
            for ingredient_id, _ in f.components:
                used[ingredient_id] += 1
        ingredient_ids = sorted(used)
        trace = 1 if self.size.lots > len(ingredient_ids) else 0
        share = np.array([used[i] for i in ingredient_ids], dtype=float)
        per = np.maximum(1, np.floor(share / share.sum() * (self.size.lots - trace)).astype(int))
        per[int(np.argmax(share))] += max(0, self.size.lots - trace - int(per.sum()))
        self.l_ingredient, self.l_received = [], []
        self.current_lot = {}  # ingredient id -> (lot index array, effective-from times)
        for ingredient_id, count in zip(ingredient_ids, per, strict=True):
            first = len(self.l_received)
            # Deliveries roughly evenly spaced, so each lot is the current one for a while.
            spacing = (self.now - self.start) / count
            received = np.linspace(self.start - 3 * DAY, self.now - 2 * DAY - spacing, count)
            received = np.sort((received + rng.uniform(0, 0.5, count) * spacing).astype(np.int64))
            received[0] = self.start - 3 * DAY
            self.l_ingredient += [ingredient_id] * count
            self.l_received += received.tolist()
            self.current_lot[ingredient_id] = (np.arange(first, first + count), received + 2 * HOUR)
        self.trace_lot = None
        if trace:
            self.trace_lot = len(self.l_received)
            self.l_ingredient.append(refs.ingredients[TRACE_INGREDIENT][0])
            self.l_received.append(self.start + 365 * DAY - DAY)
        self.l_ingredient = np.array(self.l_ingredient)
        self.l_received = np.array(self.l_received, dtype=np.int64)

    def _uses(self) -> None:
        rng, size = self.rng, self.size
        sizes = rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3], size=size.sessions)
        total = int(sizes.sum())
        eligible = np.flatnonzero(self.b_eligible)
        self.trace_batches = np.array([], dtype=int)
        if self.trace_lot is not None and len(eligible):
            t0 = self.l_received[self.trace_lot] + 2 * HOUR
            window = eligible[(self.b_time[eligible] > t0) & (self.b_time[eligible] < t0 + 365 * DAY)]
            m = min(TRACE_BATCHES, max(1, size.batches // 100), len(window))
            if m:
                self.trace_batches = window[np.linspace(0, len(window) - 1, m).astype(int)]
        per_trace = min(TRACE_USES_PER_BATCH, max(1, total // (4 * max(1, len(self.trace_batches)))))
        others = np.setdiff1d(eligible, self.trace_batches)
        rest = max(0, total - per_trace * len(self.trace_batches))
        u_batch = np.concatenate([np.repeat(self.trace_batches, per_trace),
                                  others[rng.integers(0, len(others), size=rest)] if len(others) else []])
        u_batch = u_batch.astype(np.int64)
        span = self.w_end[u_batch] - self.w_start[u_batch]
        u_time = self.w_start[u_batch] + (rng.random(len(u_batch)) * span).astype(np.int64)
        order = np.argsort(u_time, kind="stable")
        self.u_batch, u_time = u_batch[order], u_time[order]
        self.u_tenths = rng.integers(5, 31, size=len(u_batch))  # 0.5 to 3.0 mL
        self.u_session, self.s_time = self._group_sessions(u_time, sizes)
        self.u_time = self.s_time[self.u_session]  # each use happens at its session's time

    def _group_sessions(self, u_time, sizes):
        """Consecutive uses make a session of 1 to 3 uses, at the time of its last use.

        A use joins the open session only if that time is still inside the window of every
        batch already in it and its batch is not already in it; otherwise a new session opens.
        """
        w_end, batches = self.w_end.tolist(), self.u_batch.tolist()
        u_session, s_time = [0] * len(batches), []
        target_sizes = sizes.tolist() + self.rng.choice([1, 2, 3], size=len(batches) + 1).tolist()
        current, count, limit, members, t_last = -1, 0, 0, set(), 0
        for k, t in enumerate(u_time.tolist()):
            b = batches[k]
            if current < 0 or count >= target_sizes[current] or t > limit or b in members:
                if current >= 0:
                    s_time.append(t_last)
                current, count, limit, members = current + 1, 0, w_end[b], set()
            u_session[k] = current
            count, limit, t_last = count + 1, min(limit, w_end[b]), t
            members.add(b)
        if current >= 0:
            s_time.append(t_last)
        return np.array(u_session, dtype=np.int64), np.array(s_time, dtype=np.int64)

    def _units_and_statuses(self) -> None:
        rng, n = self.rng, self.size.batches
        unit = np.array([f.unit_tenths for f in self.refs.formulas])[self.b_formula]
        used = np.bincount(self.u_batch, weights=self.u_tenths, minlength=n).astype(np.int64)
        extra = rng.choice([0, 1, 2], p=[0.45, 0.35, 0.2], size=n)
        self.b_units = np.where(used > 0, -(-used // unit) + extra, rng.integers(1, 5, size=n))
        self.b_total = self.b_units * unit
        # Most batches made to measure are used up: their last use takes what is left.
        last_use = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_use, self.u_batch, np.arange(len(self.u_batch)))
        finish = (used > 0) & (extra == 0) & (rng.random(n) < 0.7)
        self.u_tenths[last_use[finish]] += (self.b_total - used)[finish]
        used = np.where(finish, self.b_total, used)
        self.b_remaining = self.b_total - used
        self.b_used = used
        discard = self.b_eligible & (self.b_remaining > 0) & (self.b_bud < self.now - DAY) & (rng.random(n) < 0.2)
        self.b_status = np.where(self.b_prepared, "prepared", np.where(self.b_rejected, "rejected", np.where(
            self.b_remaining == 0, "depleted", np.where(discard, "discarded", "released"))))
        self.b_discard_time = np.minimum(self.b_bud + 2 * HOUR, self.now - 60)

    def _consumption(self) -> None:
        """Which lot each batch component takes, how much; what each lot received and has left."""
        rows_batch, rows_lot, rows_qty = [], [], []
        trace = np.zeros(self.size.batches, dtype=bool)
        trace[self.trace_batches] = True
        trace_ingredient = self.l_ingredient[self.trace_lot] if self.trace_lot is not None else -1
        for fi, formula in enumerate(self.refs.formulas):
            members = np.flatnonzero(self.b_formula == fi)
            for ingredient_id, per_unit in formula.components:
                lots, effective = self.current_lot[ingredient_id]
                lot = lots[np.maximum(0, np.searchsorted(effective, self.b_time[members], side="right") - 1)]
                if ingredient_id == trace_ingredient:
                    lot = np.where(trace[members], self.trace_lot, lot)
                rows_batch.append(members)
                rows_lot.append(lot)
                rows_qty.append(self.b_units[members] * per_unit)
        batch = np.concatenate(rows_batch)
        order = np.lexsort((batch,))  # components of a batch together, in formula order
        self.c_batch, self.c_lot = batch[order], np.concatenate(rows_lot)[order]
        self.c_qty = np.concatenate(rows_qty)[order]
        n_lots = len(self.l_received)
        consumed = np.bincount(self.c_lot, weights=self.c_qty, minlength=n_lots).astype(np.int64)
        last_use = np.full(n_lots, 0, dtype=np.int64)
        np.maximum.at(last_use, self.c_lot, self.b_time[self.c_batch])
        expiry_seconds = np.maximum(self.l_received + 730 * DAY, last_use + 180 * DAY)
        self.l_expires = [(EPOCH + timedelta(seconds=int(s))).date() for s in expiry_seconds]
        expired = np.array([d < self.today for d in self.l_expires])
        newest = np.zeros(n_lots, dtype=bool)
        for lots, _ in self.current_lot.values():
            newest[lots[-3:]] = True
        # Stock is left in the newest lots (and in any lot no batch took from); the rest were used up.
        leftover = np.where(newest, np.maximum(consumed // 3, 50_000) + 200_000, 0)
        leftover = np.where(consumed == 0, np.maximum(leftover, 50_000), leftover)
        self.l_quantity = consumed + leftover
        self.l_waste = np.where(expired & (leftover > 0), leftover, 0)  # written off once expired
        self.l_remaining = leftover - self.l_waste
        self.l_consumed = consumed
        self.l_status = np.where(self.l_remaining > 0, "released", "depleted")
        self.l_waste_time = np.array([min(self.now - 60, int((datetime.combine(d, datetime.min.time(), UTC)
                                                              - EPOCH).total_seconds()) + 2 * DAY)
                                      for d in self.l_expires])
        self.c_scanned = self.rng.random(len(self.c_batch)) < 0.8


# --- writing -------------------------------------------------------------------------------------


def _chunks(rows: Iterable, size: int = CHUNK) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Writer:
    """Bulk inserts in one transaction: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, connection: sa.Connection, report: Callable[[str], None]):
        self.connection, self.report = connection, report
        self.postgresql = connection.dialect.name == "postgresql"
        self.counts: dict[str, int] = {}

    def insert(self, table: sa.Table, rows: Iterable[dict]) -> None:
        started = time.perf_counter()
        count = (self._copy if self.postgresql else self._executemany)(table, rows)
        self.counts[table.name] = self.counts.get(table.name, 0) + count
        self.report(f"  {table.name:<18} {count:>10,} rows  {time.perf_counter() - started:6.1f} s")

    def _executemany(self, table: sa.Table, rows: Iterable[dict]) -> int:
        """The driver's executemany with values converted by each column type's own bind processor.

        The same values Core's insert() would bind, at a third of its per-row cost.
        """
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return 0
        columns, dialect = list(first), self.connection.dialect
        processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        convert = [(c, p) for c, p in zip(columns, processors, strict=True)]
        statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cursor = self.connection.connection.driver_connection.cursor()
        count = 0
        for chunk in _chunks(itertools.chain([first], rows)):
            cursor.executemany(statement, [tuple(p(row[c]) if p else row[c] for c, p in convert) for row in chunk])
            count += len(chunk)
        return count

    def _copy(self, table: sa.Table, rows: Iterable[dict]) -> int:
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return 0
        columns = list(first)
        json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
        cursor = self.connection.connection.driver_connection.cursor()
        count = 0
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for values in itertools.chain([first], rows):
                copy.write_row([json.dumps(values[c]) if c in json_columns and values[c] is not None
                                else values[c] for c in columns])
                count += 1
        return count


def _reserve_ids(connection: sa.Connection, counts: dict) -> dict:
    """The first id of each table's new rows; on PostgreSQL the sequence is moved past them."""
    ids = {}
    for table, n in counts.items():
        highest = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))
        first = highest + 1
        if connection.dialect.name == "postgresql":
            sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
            first = max(first, connection.scalar(sa.text("SELECT nextval(:s)"), {"s": sequence}))
            connection.execute(sa.text("SELECT setval(:s, :v)"), {"s": sequence, "v": first + max(n, 1) - 1})
        ids[table.name] = first
    return ids


def _start(connection: sa.Connection, plan: Plan) -> Start:
    counters = dict(connection.execute(sa.select(CodeCounter.key, CodeCounter.value)).all())
    highest_lot = connection.scalar(sa.select(sa.func.max(Lot.code)).where(Lot.code.like("L%"))) or "L0"
    lot_number = max(counters.get("lot", 0), int(highest_lot[1:] or 0)) + 1
    if lot_number + len(plan.l_received) > 999_999:
        raise ValueError("Lot codes would pass L999999: use a fresh database.")
    day_counters = defaultdict(int, {k[5:]: v for k, v in counters.items() if k.startswith("batch")})
    for code in connection.scalars(sa.select(Batch.code)):
        if len(code) == 11 and code[1:].isdigit():
            day_counters[code[1:7]] = max(day_counters[code[1:7]], int(code[7:]))
    highest_chart = connection.scalar(sa.select(sa.func.max(Patient.chart_number))
                                      .where(Patient.chart_number.like("SC_______"))) or "SC0000000"
    last_hash = connection.scalar(sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    return Start(lot_number=lot_number, batch_day_counters=day_counters,
                 chart_number=int(highest_chart[2:]) + 1 if highest_chart[2:].isdigit() else 1,
                 last_hash=last_hash or audit.GENESIS_HASH)


def _batch_codes(plan: Plan, start: Start) -> list[str]:
    zone = clinic_zone()
    codes, counters = [], start.batch_day_counters
    for seconds in plan.b_time.tolist():
        day = _dt(seconds).astimezone(zone).strftime("%y%m%d")
        counters[day] += 1
        if counters[day] > 9999:
            raise ValueError(f"More than 9,999 batches on {day}: use fewer batches.")
        codes.append(f"B{day}{counters[day]:04d}")
    return codes


class AuditLog:
    """Audit rows appended to the chain in time order, hashed as services.audit.record hashes them."""

    def __init__(self):
        self.pending: list[tuple[int, int, dict]] = []

    def add(self, seconds: int, actor: tuple | None, action: str, entity_type: str, entity_id: int | None, *,
            old=None, new=None, reason: str = "synthetic scale data (seed-scale)") -> None:
        self.pending.append((seconds, len(self.pending), {
            "occurred_at": _dt(seconds), "actor_id": actor[0] if actor else None,
            "actor_name": actor[1] if actor else "system", "action": action, "entity_type": entity_type,
            "entity_id": entity_id, "old_values": audit.jsonable(old) if old is not None else None,
            "new_values": audit.jsonable(new) if new is not None else None, "reason": reason}))

    def rows(self, first_id: int, prev_hash: str) -> Iterator[dict]:
        self.pending.sort(key=lambda p: (p[0], p[1]))
        for offset, (_, _, row) in enumerate(self.pending):
            row["prev_hash"] = prev_hash
            row["hash"] = prev_hash = audit.chain_hash(prev_hash, SimpleNamespace(**row))
            row["id"] = first_id + offset
            yield row


def _write(writer: Writer, plan: Plan, start: Start, log: AuditLog) -> Summary:
    connection, refs, rng = writer.connection, plan.refs, plan.rng
    now = utcnow()
    people = refs.users
    pharmacist1, pharmacist2 = people["scale.pharmacist1"], people["scale.pharmacist2"]
    technician = people["scale.technician"]
    practitioners = [people[u] for u, _, r in SCALE_USERS if r == "practitioner"] + [pharmacist1]
    by_id = {v[0]: v for v in people.values()}
    n_lots, n_batches, n_sessions = len(plan.l_received), plan.size.batches, len(plan.s_time)
    n_uses, n_components = len(plan.u_batch), len(plan.c_batch)
    n_events = max(1, n_sessions // 1000) if n_sessions else 0
    lot_moves = n_lots + n_components + int((plan.l_waste > 0).sum())
    batch_moves = n_batches + n_uses + int((plan.b_status == "discarded").sum())
    ids = _reserve_ids(connection, {
        Patient.__table__: plan.size.patients, Lot.__table__: n_lots, Batch.__table__: n_batches,
        BatchComponent.__table__: n_components, TreatmentSession.__table__: n_sessions,
        SessionUse.__table__: n_uses, StockMovement.__table__: lot_moves + batch_moves,
        Signature.__table__: n_lots + n_batches, AdverseEvent.__table__: n_events})
    lot_id0, batch_id0, patient_id0 = ids["lots"], ids["batches"], ids["patients"]
    session_id0, use_id0 = ids["treatment_sessions"], ids["session_uses"]
    ingredient_names = {v[0]: k for k, v in refs.ingredients.items()}
    ingredient_meta = {v[0]: v for v in refs.ingredients.values()}
    lot_codes = [f"L{start.lot_number + i:06d}" for i in range(n_lots)]
    batch_codes = _batch_codes(plan, start)

    # Patients.
    patient_count = plan.size.patients
    first, last = rng.integers(0, len(FIRST_NAMES), patient_count), rng.integers(0, len(LAST_NAMES), patient_count)
    births = rng.integers(-7300, 12800, patient_count)  # 1950 to 2005
    created = plan.start - rng.integers(DAY, 365 * DAY, patient_count)

    def patient_rows():
        for i in range(patient_count):
            chart = f"SC{start.chart_number + i:07d}"
            yield {"id": patient_id0 + i, "chart_number": chart,
                   "name": f"{FIRST_NAMES[first[i]]} {LAST_NAMES[last[i]]}", "birth_on": date(1970, 1, 1)
                   + timedelta(days=int(births[i])), "phone": f"+44 20 7946 {i % 10000:04d}" if i % 5 < 2 else "",
                   "email": f"patient{start.chart_number + i}@example.org" if i % 2 else "",
                   "created_at": _dt(created[i])}

    writer.insert(Patient.__table__, patient_rows())

    # Lots: received by the technician, released an hour later by a pharmacist (signed, audited).
    signature_id0 = ids["signatures"]

    def lot_rows():
        for i in range(n_lots):
            ingredient_id = int(plan.l_ingredient[i])
            _, unit, gtin = ingredient_meta[ingredient_id]
            received = int(plan.l_received[i])
            trace = i == plan.trace_lot
            number = f"{TRACE_LOT_PREFIX}{lot_codes[i]}" if trace else f"SC-{lot_codes[i]}"
            quantity = _dec(plan.l_quantity[i], 3)
            yield {"id": lot_id0 + i, "code": lot_codes[i], "ingredient_id": ingredient_id,
                   "supplier": "Scale Supplies Ltd", "supplier_lot_number": number, "gtin": gtin,
                   "received_at": _dt(received), "received_by_id": technician[0], "expires_on": plan.l_expires[i],
                   "quantity_received": quantity, "remaining": _dec(plan.l_remaining[i], 3),
                   "coa_reference": f"CoA {number}", "location": "Store " + "ABCD"[i % 4],
                   "status": str(plan.l_status[i]), "status_reason": "", "released_at": _dt(received + HOUR),
                   "released_by_id": pharmacist1[0]}
            log.add(received, technician, "lot.received", "lot", lot_id0 + i, new={
                "code": lot_codes[i], "ingredient": ingredient_names[ingredient_id], "supplier": "Scale Supplies Ltd",
                "supplier_lot_number": number, "gtin": gtin, "expires_on": plan.l_expires[i], "quantity": quantity,
                "coa_reference": f"CoA {number}", "location": "Store " + "ABCD"[i % 4], "status": "quarantine"})
            snapshot = {"remaining": quantity, "status_reason": ""}
            log.add(received + HOUR, pharmacist1, "lot.released", "lot", lot_id0 + i,
                    old={"status": "quarantine", **snapshot}, new={"status": "released", **snapshot})

    writer.insert(Lot.__table__, lot_rows())

    # Batches: compounded, then verified (signed) by a pharmacist who did not compound them.
    formulas_ = refs.formulas
    compounder = np.where(plan.b_by_pharmacist, pharmacist1[0], technician[0])
    verifier = np.where(plan.b_by_pharmacist, pharmacist2[0],
                        np.where(rng.random(n_batches) < 0.5, pharmacist1[0], pharmacist2[0]))
    component_start = np.searchsorted(plan.c_batch, np.arange(n_batches + 1))

    def batch_rows():
        for i in range(n_batches):
            formula = formulas_[plan.b_formula[i]]
            status, compounded = str(plan.b_status[i]), int(plan.b_time[i])
            verified = status not in ("prepared", "rejected")
            total = _dec(plan.b_total[i], 1)
            yield {"id": batch_id0 + i, "code": batch_codes[i], "formula_id": formula.id,
                   "units": int(plan.b_units[i]), "total_volume_ml": total,
                   "remaining_volume_ml": _dec(plan.b_remaining[i], 1) if status != "discarded" else Decimal(0),
                   "compounded_at": _dt(compounded), "compounded_by_id": int(compounder[i]),
                   "verified_at": _dt(plan.b_verified[i]) if verified else None,
                   "verified_by_id": int(verifier[i]) if verified else None, "beyond_use_at": _dt(plan.b_bud[i]),
                   "storage": formula.storage, "notes": "", "deviations": "", "status": status,
                   "status_reason": "failed visual inspection (synthetic)" if status == "rejected" else "",
                   "discard_reason": "expired" if status == "discarded" else None}
            parts = range(component_start[i], component_start[i + 1])
            log.add(compounded, by_id[int(compounder[i])], "batch.compounded", "batch", batch_id0 + i, new={
                "code": batch_codes[i], "formula": formula.label, "units": int(plan.b_units[i]),
                "total_volume_ml": total, "beyond_use_at": _dt(plan.b_bud[i]), "bud_table": BUD_TABLE_VERSION,
                "deviations": "", "components": [{"lot": lot_codes[plan.c_lot[k]], "quantity": _dec(plan.c_qty[k], 3),
                                                  "scanned": bool(plan.c_scanned[k])} for k in parts]})
            if status != "prepared":
                old = {"status": "prepared", "remaining_volume_ml": total, "status_reason": "", "discard_reason": None}
                new = {**old, "status": "rejected" if status == "rejected" else "released"}
                action = "batch.rejected" if status == "rejected" else "batch.released"
                log.add(int(plan.b_verified[i]), by_id[int(verifier[i])], action, "batch", batch_id0 + i,
                        old=old, new=new)
            if status == "discarded":
                left = _dec(plan.b_remaining[i], 1)
                log.add(int(plan.b_discard_time[i]), pharmacist1, "batch.discarded", "batch", batch_id0 + i,
                        old={"status": "released", "remaining_volume_ml": left, "status_reason": "",
                             "discard_reason": None},
                        new={"status": "discarded", "remaining_volume_ml": Decimal(0), "status_reason": "",
                             "discard_reason": "expired"}, reason="expired")

    writer.insert(Batch.__table__, batch_rows())
    writer.insert(BatchComponent.__table__, (
        {"id": ids["batch_components"] + k, "batch_id": batch_id0 + int(plan.c_batch[k]),
         "lot_id": lot_id0 + int(plan.c_lot[k]), "ingredient_id": int(plan.l_ingredient[plan.c_lot[k]]),
         "theoretical_quantity": _dec(plan.c_qty[k], 3), "quantity": _dec(plan.c_qty[k], 3),
         "scanned": bool(plan.c_scanned[k])} for k in range(n_components)))

    def signature_rows():
        next_id = itertools.count(signature_id0)
        for i in range(n_lots):
            yield {"id": next(next_id), "signer_id": pharmacist1[0], "signer_name": pharmacist1[1],
                   "signed_at": _dt(plan.l_received[i] + HOUR), "meaning": "released", "entity_type": "lot",
                   "entity_id": lot_id0 + i}
        for i in range(n_batches):
            status = str(plan.b_status[i])
            if status != "prepared":
                signer = by_id[int(verifier[i])]
                yield {"id": next(next_id), "signer_id": signer[0], "signer_name": signer[1],
                       "signed_at": _dt(plan.b_verified[i]), "meaning": "rejected" if status == "rejected"
                       else "verified", "entity_type": "batch", "entity_id": batch_id0 + i}

    writer.insert(Signature.__table__, signature_rows())

    # Sessions and their uses.
    s_patient = rng.integers(0, patient_count, n_sessions)
    s_practitioner = rng.integers(0, len(practitioners), n_sessions)
    first_use = np.searchsorted(plan.u_session, np.arange(n_sessions))

    def session_rows():
        for s in range(n_sessions):
            performed = int(plan.s_time[s])
            formula = formulas_[plan.b_formula[plan.u_batch[first_use[s]]]]
            yield {"id": session_id0 + s, "patient_id": patient_id0 + int(s_patient[s]),
                   "practitioner_id": practitioners[s_practitioner[s]][0], "performed_at": _dt(performed),
                   "indication": formula.indication, "notes": "", "recorded_at": _dt(min(performed + 600, plan.now)),
                   "voided_at": None, "voided_by_id": None, "void_reason": ""}

    writer.insert(TreatmentSession.__table__, session_rows())
    area_pick = rng.integers(0, 4, n_uses)
    writer.insert(SessionUse.__table__, (
        {"id": use_id0 + k, "session_id": session_id0 + int(plan.u_session[k]),
         "batch_id": batch_id0 + int(plan.u_batch[k]), "volume_ml": _dec(plan.u_tenths[k], 1),
         "area": (areas := formulas_[plan.b_formula[plan.u_batch[k]]].areas)[area_pick[k] % len(areas)]}
        for k in range(n_uses)))

    # The ledger: per owner in time order with running balances, written in global time order.
    writer.insert(StockMovement.__table__, _movements(plan, ids, batch_codes, (technician, pharmacist1), compounder,
                                                      practitioners, s_practitioner, s_patient, start))

    # A few adverse events (a handful severe, so quality signals show).
    event_sessions = np.sort(rng.choice(n_sessions, size=n_events, replace=False)) if n_events else []
    event_types = rng.choice(len(EVENT_TYPES), p=EVENT_WEIGHTS, size=n_events)
    today = plan.today

    def event_rows():
        for k, s in enumerate(event_sessions):
            performed = int(plan.s_time[s])
            kind = EVENT_TYPES[event_types[k]]
            severe = kind in ("infection", "necrosis", "allergic_reaction")
            onset = min((_dt(performed).astimezone(clinic_zone()).date() + timedelta(days=k % 3)), today)
            yield {"id": ids["adverse_events"] + k, "session_id": session_id0 + int(s), "type": kind,
                   "severity": "severe" if severe else ("mild", "moderate")[k % 2], "onset_on": onset,
                   "outcome": "resolved" if not severe else "referred", "notes": "",
                   "recorded_at": _dt(min(performed + (1 + k % 4) * DAY, plan.now - 60)),
                   "recorded_by_id": practitioners[s_practitioner[s]][0]}

    writer.insert(AdverseEvent.__table__, event_rows())

    counts = dict(writer.counts)
    trace = None
    if plan.trace_lot is not None:
        trace_batches = set(plan.trace_batches.tolist())
        trace = (lot_id0 + plan.trace_lot, lot_codes[plan.trace_lot], len(trace_batches),
                 int(sum(1 for b in plan.u_batch.tolist() if b in trace_batches)))
    for table, first_id in (("patients", patient_id0), ("treatment_sessions", session_id0),
                            ("session_uses", use_id0), ("stock_movements", ids["stock_movements"]),
                            ("adverse_events", ids["adverse_events"]), ("batch_components", ids["batch_components"]),
                            ("signatures", signature_id0)):
        if counts.get(table):
            log.add(int(now.timestamp()), None, "scale.rows_loaded", table, None,
                    new={"first_id": first_id, "last_id": first_id + counts[table] - 1, "rows": counts[table]})
    log.add(int(now.timestamp()), None, "scale.seeded", "scale", None, new={
        "seed": plan.size.seed, "counts": counts, "trace_lot": trace and {"id": trace[0], "code": trace[1]}})
    audit_id0 = _reserve_ids(connection, {AuditEvent.__table__: len(log.pending)})["audit_events"]
    writer.insert(AuditEvent.__table__, log.rows(audit_id0, start.last_hash))
    _move_counters(connection, start, lot_codes)
    return Summary(counts=writer.counts, trace_lot=trace)


def _movements(plan: Plan, ids, batch_codes, staff, compounder, practitioners, s_practitioner,
               s_patient, start) -> Iterator[dict]:
    """Every ledger row, each with its owner's balance after it, in the order things happened."""
    technician, pharmacist = staff
    lot_id0, batch_id0 = ids["lots"], ids["batches"]
    n_lots, n_batches = len(plan.l_received), plan.size.batches
    waste_lots = np.flatnonzero(plan.l_waste > 0)
    discarded = np.flatnonzero(plan.b_status == "discarded")
    # kind codes: 0 receive, 1 consume, 2 waste (lots); 3 receive, 4 use, 5 waste (batches)
    owner = np.concatenate([np.arange(n_lots), plan.c_lot, waste_lots,
                            n_lots + np.arange(n_batches), n_lots + plan.u_batch, n_lots + discarded])
    when = np.concatenate([plan.l_received, plan.b_time[plan.c_batch], plan.l_waste_time[waste_lots],
                           plan.b_time, plan.u_time, plan.b_discard_time[discarded]])
    amount = np.concatenate([plan.l_quantity, -plan.c_qty, -plan.l_waste[waste_lots],
                             plan.b_total, -plan.u_tenths, -plan.b_remaining[discarded]])
    kind = np.concatenate([np.zeros(n_lots, int), np.ones(len(plan.c_lot), int), np.full(len(waste_lots), 2),
                           np.full(n_batches, 3), np.full(len(plan.u_batch), 4), np.full(len(discarded), 5)])
    ref = np.concatenate([np.arange(n_lots), np.arange(len(plan.c_lot)), waste_lots, np.arange(n_batches),
                          np.arange(len(plan.u_batch)), discarded])
    sequence = np.arange(len(owner))
    by_owner = np.lexsort((sequence, when, owner))
    sorted_owner, sorted_amount = owner[by_owner], amount[by_owner]
    running = np.cumsum(sorted_amount)
    group_first = np.searchsorted(sorted_owner, sorted_owner)
    base = np.where(group_first > 0, running[group_first - 1], 0)
    balance = np.empty_like(running)
    balance[by_owner] = running - base
    if (balance < 0).any():
        raise AssertionError("a planned balance went below zero")
    movement_id0 = ids["stock_movements"]
    zone = clinic_zone()
    for position, k in enumerate(np.lexsort((sequence, when)).tolist()):
        code, r, o = int(kind[k]), int(ref[k]), int(owner[k])
        is_lot = code < 3
        row = {"id": movement_id0 + position, "lot_id": lot_id0 + o if is_lot else None,
               "batch_id": None if is_lot else batch_id0 + o - n_lots, "occurred_at": _dt(when[k]),
               "quantity": _dec(amount[k], 3 if is_lot else 1), "balance_after": _dec(balance[k], 3 if is_lot else 1),
               "reason": "", "note": "", "reference_type": "", "reference_id": None}
        if code == 0:
            row.update(kind="receive", actor_id=technician[0], note="received from Scale Supplies Ltd",
                       reference_type="lot", reference_id=lot_id0 + r)
        elif code == 1:
            b = int(plan.c_batch[r])
            row.update(kind="consume", actor_id=int(compounder[b]), reference_type="batch",
                       reference_id=batch_id0 + b, note=f"compounded into {batch_codes[b]}")
        elif code == 2:
            row.update(kind="waste", actor_id=technician[0], reason="expired",
                       note=f"expired on {plan.l_expires[r].isoformat()} (synthetic)")
        elif code == 3:
            formula = plan.refs.formulas[plan.b_formula[r]]
            row.update(kind="receive", actor_id=int(compounder[r]), reference_type="batch",
                       reference_id=batch_id0 + r,
                       note=f"{int(plan.b_units[r])} × {_dec(formula.unit_tenths, 1).normalize():f} mL compounded")
        elif code == 4:
            s = int(plan.u_session[r])
            row.update(kind="use", actor_id=practitioners[s_practitioner[s]][0], reference_type="session_use",
                       reference_id=ids["session_uses"] + r,
                       note=f"patient SC{start.chart_number + int(s_patient[s]):07d}")
        else:
            row.update(kind="waste", actor_id=pharmacist[0], reason="expired", reference_type="discard",
                       note=f"beyond-use date passed {_dt(plan.b_bud[r]).astimezone(zone):%Y-%m-%d} (synthetic)")
        yield row


def _move_counters(connection: sa.Connection, start: Start, lot_codes: list[str]) -> None:
    """Later receipts and batches take the numbers after the ones just used."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    values = {"batch" + day: n for day, n in start.batch_day_counters.items()}
    if lot_codes:
        values["lot"] = int(lot_codes[-1][1:])
    for chunk in _chunks(values.items(), 500):
        statement = insert(CodeCounter).values([{"key": k, "value": v} for k, v in chunk])
        connection.execute(statement.on_conflict_do_update(
            index_elements=[CodeCounter.key],
            set_={"value": sa.func.max(CodeCounter.value, statement.excluded.value)
                  if connection.dialect.name == "sqlite"
                  else sa.func.greatest(CodeCounter.value, statement.excluded.value)}))


def seed_scale(size: Size, *, force: bool = False, report: Callable[[str], None] = print) -> Summary:
    """Build the synthetic data set; all bulk rows are written in one transaction."""
    started = time.perf_counter()
    if not force and foreign_records():
        raise ForeignData("This database holds lots, batches or sessions not made by seed-demo or seed-scale: "
                          "seed-scale is for benchmark databases (use --force to add to it anyway).")
    _ensure_reference_rows()
    refs = _load_refs()
    db.session.commit()
    db.session.close()
    now = utcnow()
    stage = time.perf_counter()
    plan = Plan(size, refs, now)
    report(f"  planned in memory                        {time.perf_counter() - stage:6.1f} s")
    engine = db.engine
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        # SQLite: take the write lock at BEGIN (extensions._sqlite_begin), so ids and codes read here stay ours.
        connection.info["write_intent"] = True
        try:
            with connection.begin():
                if sqlite:
                    connection.exec_driver_sql("PRAGMA cache_size=-262144")
                else:
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": audit.AUDIT_CHAIN_LOCK})
                    connection.exec_driver_sql("LOCK TABLE code_counters IN EXCLUSIVE MODE")
                start = _start(connection, plan)
                summary = _write(Writer(connection, report), plan, start, AuditLog())
                stage = time.perf_counter()
            report(f"  committed                                {time.perf_counter() - stage:6.1f} s")
            stage = time.perf_counter()
            # Fresh planner statistics (and on PostgreSQL the visibility map that index-only scans need),
            # as autovacuum would produce some time after a load like this.
            if sqlite:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
            else:
                connection.commit()
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as autocommit:
                    autocommit.exec_driver_sql("VACUUM ANALYZE")
            report(f"  analyzed                                 {time.perf_counter() - stage:6.1f} s")
        finally:
            connection.info.pop("write_intent", None)
            if sqlite:
                connection.exec_driver_sql("PRAGMA cache_size=-2000")
    summary.timings.append(("total", time.perf_counter() - started))
    return summary
