"""Synthetic data at scale for benchmarks (`flask seed-scale`): consistent, bulk-inserted.

The few reference rows (accounts, ingredients, formulas) go through the real services. The
bulk (lots, batches, components, patients, sessions, uses, the ledger, signatures, audit rows,
a year of readings every 15 minutes for each site's fridge with their excursions) is planned
in memory with numpy so that every rule holds, then written in one transaction
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

import importlib
import importlib.util
import time
from collections.abc import Callable

import sqlalchemy as sa

from ..extensions import db
from ..services import audit
from ..services.clock import utcnow
from .chain import ensure_chain
from .codes import find_start
from .plan import Plan
from .reference import ensure_reference_rows, foreign_records, load_refs
from .rows import AuditLog, write_all
from .spec import (
    DEFAULTS,
    SCALE_PASSWORD,
    SCALE_USERS,
    TRACE_INGREDIENT,
    TRACE_LOT_PREFIX,
    ForeignData,
    Size,
    Summary,
)
from .writer import Writer, put_back, set_aside_indexes

__all__ = ["DEFAULTS", "SCALE_PASSWORD", "SCALE_USERS", "TRACE_INGREDIENT", "TRACE_LOT_PREFIX", "ForeignData", "Size",
           "Summary", "foreign_records", "seed_scale"]


# The tables seed-scale fills in bulk.
BULK_TABLES = ["patients", "lots", "batches", "batch_components", "signatures", "treatment_sessions", "vials",
               "session_uses", "stock_movements", "adverse_events", "audit_events", "temperature_readings",
               "excursions"]


def seed_scale(size: Size, *, force: bool = False, report: Callable[[str], None] = print) -> Summary:
    """Build the synthetic data set; all bulk rows are written in one transaction."""
    started = time.perf_counter()
    if not force and foreign_records():
        raise ForeignData("This database holds lots, batches or sessions not made by seed-demo or seed-scale: "
                          "seed-scale is for benchmark databases (use --force to add to it anyway).")
    ensure_reference_rows()
    refs = load_refs()
    # A bulk loader, not a use case: the reference rows (accounts, ingredients, formulas) are
    # committed before the raw-connection bulk write, which runs on a connection of its own.
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
                start = find_start(connection)
                restore = []
                if not sqlite:  # the big tables' secondary indexes and foreign keys built once, after the load
                    connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
                    restore = set_aside_indexes(connection, BULK_TABLES)
                writer, log = Writer(connection, report), AuditLog()
                chain = ensure_chain(writer, plan.sites, now, log)
                summary = write_all(writer, plan, start, log, chain)
                if restore:
                    stage = time.perf_counter()
                    put_back(connection, restore)
                    report(f"  indexes and foreign keys put back ({len(restore)}) {time.perf_counter() - stage:6.1f} s")
                _rebuild_exposure(connection, report)
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


def _rebuild_exposure(connection: sa.Connection, report: Callable[[str], None]) -> None:
    """The exposure counts recomputed from the rows just loaded, in the same transaction, where the
    application keeps them (`services.exposure.rebuild_all`); nothing to do where it does not."""
    if importlib.util.find_spec(f"{__package__.rsplit('.', 1)[0]}.services.exposure") is None:
        return
    exposure = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.services.exposure")
    if not hasattr(exposure, "rebuild_all"):
        return
    stage = time.perf_counter()
    exposure.rebuild_all(connection)
    report(f"  exposure rebuilt (rebuild_all)           {time.perf_counter() - stage:6.1f} s")
