"""Exposure counts (models/exposure.py): kept up to date in the transaction of each use and void.

What a lot or a batch reached, per site where the sessions were performed and for the whole
chain (site 0): batches and vials used, sessions (voided ones too, as trace and recall keep
them), voided sessions, distinct patients, and the volume of the sessions that stand.

- `count_session` adds a session as it is recorded (and the right patient's copy made by a
  patient correction); `count_void` takes its volume out and counts it voided. A lot's
  exposure includes the batches made from its child lots: the lineage is walked at use time.
- `recompute`, `rebuild_all` and `check_all` recount from the links (session uses, batch
  components, lot parents) in a fixed number of set-based statements, never a loop over rows;
  `check_all` compares the membership tables too (only the rows that differ leave the database).
- `reaching_lots`, `lot_and_ancestors` and `lots_below` walk the same lineage for the recall,
  hold, void and quality-signal rules: a recall or hold of a lot reaches its child lots.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import BatchComponent, Lot, SessionUse, TreatmentSession
from ..models.exposure import ALL_SITES, MEMBERSHIPS, ExposureCount  # noqa: F401 (ExposureCount for callers)

COUNTED = ("batches", "vials", "sessions", "voided_sessions", "patients", "volume_ml")


def lineage(lot_ids=None, name: str = "lineage"):
    """A recursive select of (lot_id, ancestor_id): each lot with itself and every lot it descends from.

    `name` keeps two of them apart in one statement.
    """
    start = sa.select(Lot.id.label("lot_id"), Lot.id.label("ancestor_id"))
    if lot_ids is not None:
        start = start.where(Lot.id.in_(lot_ids))
    up = start.cte(name, recursive=True)
    parent = sa.orm.aliased(Lot)
    return up.union_all(sa.select(up.c.lot_id, parent.parent_lot_id)
                        .join(parent, parent.id == up.c.ancestor_id).where(parent.parent_lot_id.is_not(None)))


def reaching_lots(batch_ids, name: str = "reaching_lots"):
    """A select of the lots whose recall or hold reaches these batches: those they consumed and their ancestors.

    A lot's child lots (a transfer's destination) are the same supplier lot, so a recall of the
    parent reaches what was made from its children. One recursive select, over few levels.
    """
    up = lineage(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id.in_(batch_ids)), name)
    return sa.select(up.c.ancestor_id).distinct()


def lot_and_ancestors(lot_ids, name: str = "lot_ancestors"):
    """A select of these lots' ids and those of every lot they descend from."""
    up = lineage(lot_ids, name)
    return sa.select(up.c.ancestor_id).distinct()


def lots_below(lot_ids, name: str = "lots_below"):
    """A recursive select of (root_id, lot_id): each of the lots with itself and every lot made from it."""
    down = sa.select(Lot.id.label("root_id"), Lot.id.label("lot_id")).where(Lot.id.in_(lot_ids)).cte(
        name, recursive=True)
    child = sa.orm.aliased(Lot)
    return down.union_all(sa.select(down.c.root_id, child.id).join(down, child.parent_lot_id == down.c.lot_id))


def _items(connection, batch_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """Each batch's items: itself, every lot it consumed and their ancestors (one statement)."""
    items = {batch_id: [("batch", batch_id)] for batch_id in batch_ids}
    up = lineage(sa.select(BatchComponent.lot_id).where(BatchComponent.batch_id.in_(batch_ids)))
    rows = connection.execute(sa.select(BatchComponent.batch_id, up.c.ancestor_id).distinct()
                              .join(up, up.c.lot_id == BatchComponent.lot_id)
                              .where(BatchComponent.batch_id.in_(batch_ids))
                              .order_by(BatchComponent.batch_id, up.c.ancestor_id))
    for batch_id, lot_id in rows:
        items[batch_id].append(("lot", lot_id))
    return items


def _upsert(connection, table, rows: list[dict], keys: tuple[str, ...], added: tuple[str, ...], returning=()):
    """INSERT the rows, adding `added` columns to those already there (in key order: no lock cycles)."""
    if not rows:
        return []
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    rows = sorted(rows, key=lambda row: tuple(row[k] for k in keys))
    statement = dialect.insert(table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + statement.excluded[c] for c in added})
    if returning:
        return connection.execute(statement.returning(*(table.c[c] for c in returning))).all()
    connection.execute(statement)
    return []


@dataclass
class _Share:
    """What one session adds to one item: its batches, vials and volume."""

    batches: dict  # batch id -> uses
    vials: dict  # vial id -> uses
    uses: int = 0
    volume: Decimal = Decimal("0")


def _shares(connection, session_id: int) -> dict[tuple[str, int], _Share]:
    uses = connection.execute(sa.select(SessionUse.batch_id, SessionUse.vial_id, SessionUse.volume_ml)
                              .where(SessionUse.session_id == session_id).order_by(SessionUse.id)).all()
    items = _items(connection, sorted({u.batch_id for u in uses}))
    shares: dict[tuple[str, int], _Share] = {}
    for use in uses:
        for item in items[use.batch_id]:
            share = shares.setdefault(item, _Share(defaultdict(int), defaultdict(int)))
            share.batches[use.batch_id] += 1
            if use.vial_id is not None:
                share.vials[use.vial_id] += 1
            share.uses += 1
            share.volume += use.volume_ml
    return shares


def _members(connection, name: str, shares, sites, patient_id: int) -> dict:
    """Add the session's members of one kind; answer {(kind, item, site): members new to the item there}."""
    table, column = MEMBERSHIPS[name]
    rows = []
    for (kind, item_id), share in shares.items():
        members = {"patients": {patient_id: share.uses}, "vials": share.vials, "batches": share.batches}[name]
        rows += [{"kind": kind, "item_id": item_id, "site_id": site, column: member, "uses": uses}
                 for site in sites for member, uses in members.items()]
    given = {(r["kind"], r["item_id"], r["site_id"], r[column]): r["uses"] for r in rows}
    new = defaultdict(int)
    returned = _upsert(connection, table, rows, ("kind", "item_id", "site_id", column), ("uses",),
                       returning=("kind", "item_id", "site_id", column, "uses"))
    for kind, item_id, site, member, uses in returned:
        if uses == given[(kind, item_id, site, member)]:  # nothing was there before this session
            new[(kind, item_id, site)] += 1
    return new


def count_session(session: TreatmentSession, connection=None) -> None:
    """Add a session just written (its uses flushed) to the exposure of every item it used.

    Joins the caller's transaction; a fixed handful of statements whatever the data's size.
    """
    connection = connection or db.session.connection()
    shares = _shares(connection, session.id)
    sites = (session.site_id, ALL_SITES)
    new = {name: _members(connection, name, shares, sites, session.patient_id) for name in MEMBERSHIPS}
    voided = session.voided_at is not None
    rows = [{"kind": kind, "item_id": item_id, "site_id": site, "sessions": 1, "voided_sessions": int(voided),
             "volume_ml": Decimal("0") if voided else share.volume,
             **{name: new[name].get((kind, item_id, site), 0) for name in MEMBERSHIPS}}
            for (kind, item_id), share in shares.items() for site in sites]
    _upsert(connection, ExposureCount.__table__, rows, ("kind", "item_id", "site_id"), COUNTED)


def count_void(session: TreatmentSession, connection=None) -> None:
    """A session voided: it stays in every count, flagged, and its volume leaves the total."""
    connection = connection or db.session.connection()
    shares = _shares(connection, session.id)
    rows = [{"kind": kind, "item_id": item_id, "site_id": site, "batches": 0, "vials": 0, "sessions": 0,
             "voided_sessions": 1, "patients": 0, "volume_ml": -share.volume}
            for (kind, item_id), share in shares.items() for site in (session.site_id, ALL_SITES)]
    _upsert(connection, ExposureCount.__table__, rows, ("kind", "item_id", "site_id"), COUNTED)


# --- recounts from the links ---------------------------------------------------------------------

# Every (kind, item, batch) link: a batch is its own item; a lot reaches the batches made from it
# and from its descendants (child lots made at a transfer's destination). `scope` narrows them.
LINKS = """WITH RECURSIVE lineage(lot_id, ancestor_id) AS (
    SELECT id, id FROM lots
    UNION ALL
    SELECT lineage.lot_id, lots.parent_lot_id FROM lineage JOIN lots ON lots.id = lineage.ancestor_id
    WHERE lots.parent_lot_id IS NOT NULL),
links(kind, item_id, batch_id) AS (
    SELECT 'batch', id, id FROM batches
    UNION
    SELECT 'lot', lineage.ancestor_id, batch_components.batch_id
    FROM batch_components JOIN lineage ON lineage.lot_id = batch_components.lot_id),
scope(kind, item_id, batch_id) AS (SELECT kind, item_id, batch_id FROM links {where}),
used AS (
    SELECT scope.kind, scope.item_id, scope.batch_id, su.vial_id, su.volume_ml, ts.id AS session_id,
           ts.patient_id, ts.site_id, ts.voided_at
    FROM scope JOIN session_uses su ON su.batch_id = scope.batch_id
    JOIN treatment_sessions ts ON ts.id = su.session_id)
"""
ONE_ITEM = "WHERE kind = :kind AND item_id = :item_id"
MEMBERS = {"patients": ("exposure_patients", "patient_id", "patient_id"),
           "vials": ("exposure_vials", "vial_id", "vial_id"),
           "batches": ("exposure_batches", "batch_id", "batch_id")}
# The counts of one group of used rows; `volume_ml` only of the sessions that stand.
TALLY = """count(DISTINCT session_id), count(DISTINCT CASE WHEN voided_at IS NOT NULL THEN session_id END),
    coalesce(sum(CASE WHEN voided_at IS NULL THEN volume_ml ELSE 0 END), 0)"""


def _statements(where: str) -> list[str]:
    """Rebuild the rows of the items `where` selects, set-based: memberships, then counts from them."""
    filtered = "AND kind = :kind AND item_id = :item_id" if where else ""
    links = LINKS.format(where=where)
    statements = [f"DELETE FROM {table} {where}" for table in
                  ("exposure_counts", "exposure_patients", "exposure_vials", "exposure_batches")]
    for table, column, source in MEMBERS.values():
        not_null = "WHERE vial_id IS NOT NULL" if column == "vial_id" else ""
        statements.append(
            f"{links} INSERT INTO {table} (kind, item_id, site_id, {column}, uses) "
            f"SELECT kind, item_id, site_id, {source}, count(*) FROM used {not_null} "
            f"GROUP BY kind, item_id, site_id, {source}")
        statements.append(
            f"INSERT INTO {table} (kind, item_id, site_id, {column}, uses) "
            f"SELECT kind, item_id, {ALL_SITES}, {column}, sum(uses) FROM {table} "
            f"WHERE site_id <> {ALL_SITES} {filtered} GROUP BY kind, item_id, {column}")
    statements.append(
        f"{links} INSERT INTO exposure_counts "
        "(kind, item_id, site_id, batches, vials, patients, sessions, voided_sessions, volume_ml) "
        f"SELECT kind, item_id, site_id, 0, 0, 0, {TALLY} FROM used GROUP BY kind, item_id, site_id")
    # Every session has one site: the chain's sessions and volume are the sites' sum.
    statements.append(
        "INSERT INTO exposure_counts "
        "(kind, item_id, site_id, batches, vials, patients, sessions, voided_sessions, volume_ml) "
        f"SELECT kind, item_id, {ALL_SITES}, 0, 0, 0, sum(sessions), sum(voided_sessions), sum(volume_ml) "
        f"FROM exposure_counts WHERE site_id <> {ALL_SITES} {filtered} GROUP BY kind, item_id")
    distinct = ", ".join(
        f"{name} = (SELECT count(*) FROM {table} m WHERE m.kind = exposure_counts.kind "
        "AND m.item_id = exposure_counts.item_id AND m.site_id = exposure_counts.site_id)"
        for name, (table, _, _) in MEMBERS.items())
    statements.append(f"UPDATE exposure_counts SET {distinct} {where}")
    return statements


def rebuild_all(connection=None) -> None:
    """Recount every lot's and batch's exposure from the links, set-based, in the caller's transaction.

    Works on a plain connection (the bulk seed's, inside its transaction) or the session's.
    """
    connection = connection or db.session.connection()
    for statement in _statements(""):
        connection.execute(sa.text(statement))


def recompute(kind: str, item_id: int, connection=None) -> None:
    """Recount one lot's or batch's exposure from the links (every site and the chain)."""
    connection = connection or db.session.connection()
    for statement in _statements(ONE_ITEM):
        connection.execute(sa.text(statement), {"kind": kind, "item_id": item_id})


def recount(connection=None, kind: str | None = None, item_id: int | None = None) -> dict:
    """{(kind, item, site): {field: value}} counted from the links now: two grouped statements."""
    connection = connection or db.session.connection()
    links = LINKS.format(where=ONE_ITEM if kind else "")
    fields = "count(DISTINCT batch_id), count(DISTINCT vial_id), count(DISTINCT patient_id)"
    rows = connection.execute(sa.text(
        f"{links} SELECT kind, item_id, site_id, {fields}, {TALLY} FROM used GROUP BY kind, item_id, site_id "
        f"UNION ALL SELECT kind, item_id, {ALL_SITES}, {fields}, {TALLY} FROM used GROUP BY kind, item_id"),
        {"kind": kind, "item_id": item_id} if kind else {})
    order = ("batches", "vials", "patients", "sessions", "voided_sessions", "volume_ml")
    return {(k, i, s): dict(zip(order, values, strict=True)) for k, i, s, *values in rows}


@dataclass(frozen=True)
class Drift:
    kind: str
    item_id: int
    site_id: int
    field: str
    kept: object
    counted: object

    def __str__(self) -> str:
        where = "all sites" if self.site_id == ALL_SITES else f"site {self.site_id}"
        return f"{self.kind} {self.item_id} ({where}): {self.field} kept {self.kept}, counted {self.counted}"


def _same(field: str, kept, counted) -> bool:
    if field == "volume_ml":
        return Decimal(str(kept or 0)).quantize(Decimal("0.001")) == Decimal(str(counted or 0)).quantize(
            Decimal("0.001"))
    return int(kept or 0) == int(counted or 0)


# A membership table's rows that differ from a recount: those counted but not kept as they are, and
# those kept but not counted so. Set-based (EXCEPT), so only the differences leave the database.
MEMBER_DIFF = """{links}, counted(kind, item_id, site_id, member, uses) AS (
    SELECT kind, item_id, site_id, {source}, count(*) FROM used {not_null} GROUP BY kind, item_id, site_id, {source}
    UNION ALL
    SELECT kind, item_id, {all_sites}, {source}, count(*) FROM used {not_null} GROUP BY kind, item_id, {source}),
kept(kind, item_id, site_id, member, uses) AS (SELECT kind, item_id, site_id, {column}, uses FROM {table})
SELECT 'counted', kind, item_id, site_id, member, uses FROM (
    SELECT kind, item_id, site_id, member, uses FROM counted
    EXCEPT SELECT kind, item_id, site_id, member, uses FROM kept
) AS missing
UNION ALL
SELECT 'kept', kind, item_id, site_id, member, uses FROM (
    SELECT kind, item_id, site_id, member, uses FROM kept
    EXCEPT SELECT kind, item_id, site_id, member, uses FROM counted
) AS extra"""
MEMBER_NOUN = {"patients": "patient", "vials": "vial", "batches": "batch"}


def member_drifts(connection=None) -> list[Drift]:
    """The membership rows (item, site, member: uses) that differ from a recount: one statement per table."""
    connection = connection or db.session.connection()
    links = LINKS.format(where="")
    drifts = []
    for name, (table, column, source) in MEMBERS.items():
        not_null = "WHERE vial_id IS NOT NULL" if column == "vial_id" else ""
        found: dict = defaultdict(dict)
        for side, kind, item_id, site_id, member, uses in connection.execute(sa.text(MEMBER_DIFF.format(
                links=links, source=source, not_null=not_null, all_sites=ALL_SITES, column=column, table=table))):
            found[(kind, item_id, site_id, member)][side] = uses
        drifts += [Drift(kind, item_id, site_id, f"{MEMBER_NOUN[name]} {member} uses", sides.get("kept", 0),
                         sides.get("counted", 0)) for (kind, item_id, site_id, member), sides in found.items()]
    return drifts


def check_all(connection=None) -> tuple[list[Drift], int]:
    """Compare every kept row, counts and memberships, with a recount from the links.

    Answers the drifts (sorted by item and site) and the count rows checked.
    """
    connection = connection or db.session.connection()
    counted = recount(connection)
    table = ExposureCount.__table__
    kept = {(row.kind, row.item_id, row.site_id): {f: getattr(row, f) for f in COUNTED}
            for row in connection.execute(sa.select(table))}
    drifts = []
    for key in sorted(set(kept) | set(counted)):
        mine, theirs = kept.get(key, {}), counted.get(key, {})
        drifts += [Drift(*key, field, mine.get(field, 0), theirs.get(field, 0)) for field in COUNTED
                   if not _same(field, mine.get(field), theirs.get(field))]
    drifts += member_drifts(connection)
    drifts.sort(key=lambda d: (d.kind, d.item_id, d.site_id, d.field))
    return drifts, len(set(kept) | set(counted))
