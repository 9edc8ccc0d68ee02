"""Audit-workbook export speed and memory against raw openpyxl (outside the test suite).

    python -m bench.bench_export [--rows 1000000] [--repeat 2]

Builds N session-use rows in a temporary SQLite database (Core bulk inserts), then, each in a
fresh process so that peak memory is its own: (1) the audit workbook export of those rows,
straight from the database; (2) raw openpyxl write-only writing the same values, already in
memory, to one sheet. The two alternate `--repeat` times (best time of each kept: other work
on the machine only ever slows a run down). Prints rows/s for both, their ratio (target >= 0.7)
and the largest growth of each process's peak RSS during the write (target: flat, < 250 MB).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ZONE = "Europe/London"
DAYS = 30
USES_PER_SESSION = 2
AREAS = ("abdomen", "flanks", "submental", "thighs", "scalp", "face", "neck", "décolleté")
INDICATIONS = ("fat reduction", "skin rejuvenation", "hair loss")
PRACTITIONERS = ("Dr Ana Bench", "Dr Ben Bench", "Dr Cleo Bench")
RANGE_END = datetime(2026, 10, 31, tzinfo=UTC)  # fixed: the same rows whatever the day it runs


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def start_memory_window() -> float:
    """Reset the process's peak RSS (Linux clear_refs 5) and answer the RSS now, in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:  # elsewhere: the lifetime peak, a cruder baseline
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan(rows: int) -> dict:
    sessions = max(1, rows // USES_PER_SESSION)
    return {"rows": rows, "sessions": sessions, "patients": max(1, rows // 20), "batches": max(1, rows // 200)}


def performed_at(session: int, sessions: int) -> datetime:
    """Sessions spread evenly over the DAYS clinic days before RANGE_END."""
    span = timedelta(days=DAYS).total_seconds() - 3600
    return RANGE_END - timedelta(days=DAYS) + timedelta(seconds=1800 + span * session / sessions)


def session_rows(sizes: dict):
    for s in range(1, sizes["sessions"] + 1):
        yield {"id": s, "patient_id": 1 + s % sizes["patients"], "practitioner_id": 1 + s % len(PRACTITIONERS),
               "performed_at": performed_at(s, sizes["sessions"]), "indication": INDICATIONS[s % 3], "notes": "",
               "recorded_at": performed_at(s, sizes["sessions"]), "void_reason": ""}


def use_rows(sizes: dict):
    for u in range(1, sizes["rows"] + 1):
        session = 1 + (u - 1) // USES_PER_SESSION
        yield {"id": u, "session_id": min(session, sizes["sessions"]), "batch_id": 1 + u % sizes["batches"],
               "volume_ml": Decimal(f"{1 + u % 4}.{u % 1000:03d}"), "area": AREAS[u % len(AREAS)]}


def expected_values(sizes: dict) -> list[list]:
    """The Sessions sheet's rows as the export writes them: what raw openpyxl gets to write."""
    zone = ZoneInfo(ZONE)
    rows = []
    for use in use_rows(sizes):
        s = use["session_id"]
        rows.append([s, performed_at(s, sizes["sessions"]).astimezone(zone).replace(tzinfo=None),
                     f"CH-{1 + s % sizes['patients']:06d}", PRACTITIONERS[s % len(PRACTITIONERS)],
                     INDICATIONS[s % 3], batch_code(use["batch_id"]), use["volume_ml"], use["area"], "no", None])
    return rows


def batch_code(batch_id: int) -> str:
    return f"B260901{batch_id:04d}"


def make_app(db_path: Path):
    from compounding import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}", "SECRET_KEY": "bench", "TESTING": False,
                       "AUTO_MIGRATE": False, "CLINIC_TIMEZONE": ZONE, "CLINIC_NAME": "Bench Clinic",
                       # The workbook's cover writes an audit checkpoint: keep it beside the bench database.
                       "AUDIT_KEY": "bench", "AUDIT_CHECKPOINT_FILE": str(db_path.with_suffix(".checkpoints"))})


def chunks(iterable, size: int = 10_000):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build(db_path: Path, sizes: dict) -> None:
    import sqlalchemy as sa

    from compounding.extensions import db
    from compounding.models import Batch, Formula, Patient, SessionUse, TreatmentSession, User
    from compounding.models.patient import fold

    app = make_app(db_path)
    with app.app_context():
        db.create_all()
        before = RANGE_END - timedelta(days=DAYS + 5)  # reference rows fall before the range
        with db.engine.begin() as connection:
            connection.execute(sa.insert(User.__table__), [
                {"id": i, "username": f"bench{i}", "display_name": name, "display_name_key": fold(name),
                 "role": "practitioner", "password_hash": "x", "active": True, "created_at": before}
                for i, name in enumerate(PRACTITIONERS, 1)])
            connection.execute(sa.insert(Formula.__table__), [{
                "id": 1, "code": "BENCH", "version": 1, "name": "Bench mix", "indication": "other",
                "route": "intradermal", "unit_volume_ml": Decimal("10"), "storage": "fridge",
                "bud_category": "category_2_aseptic_sterility_tested", "status": "approved", "created_at": before,
                "created_by_id": 1}])
            connection.execute(sa.insert(Batch.__table__), [{
                "id": b, "code": batch_code(b), "formula_id": 1, "units": 100, "total_volume_ml": Decimal("1000"),
                "remaining_volume_ml": Decimal("0"), "compounded_at": before, "compounded_by_id": 1,
                "beyond_use_at": RANGE_END + timedelta(days=30), "storage": "fridge", "status": "released"}
                for b in range(1, sizes["batches"] + 1)])
            for chunk in chunks({"id": p, "chart_number": f"CH-{p:06d}", "chart_key": f"ch-{p:06d}",
                                 "name": f"Patient {p}", "name_key": f"patient {p}", "created_at": before}
                                for p in range(1, sizes["patients"] + 1)):
                connection.execute(sa.insert(Patient.__table__), chunk)
            for chunk in chunks(session_rows(sizes)):
                connection.execute(sa.insert(TreatmentSession.__table__), chunk)
            for chunk in chunks(use_rows(sizes)):
                connection.execute(sa.insert(SessionUse.__table__), chunk)
        db.engine.dispose()


def run_export(db_path: Path, out: Path) -> dict:
    import sqlalchemy as sa

    from compounding import workbooks
    from compounding.extensions import db

    app = make_app(db_path)
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        rss_before = start_memory_window()
        start = time.perf_counter()
        first_day = (RANGE_END - timedelta(days=DAYS)).date()
        last_day = RANGE_END.date()
        summary = workbooks.audit_workbook(out, first_day, last_day, generated_by="bench", clinic_name="Bench Clinic")
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "rows": dict(summary.parts)["Sessions"], "rss_delta_mb": peak_rss_mb() - rss_before,
                "rss_peak_mb": peak_rss_mb(), "bytes": out.stat().st_size}


def run_raw(sizes: dict, out: Path) -> dict:
    from openpyxl import Workbook

    values = expected_values(sizes)  # built before timing: raw openpyxl only writes
    header = ["Session id", f"Performed ({ZONE})", "Patient chart", "Practitioner", "Indication", "Batch code",
              "Volume (mL)", "Area", "Voided", "Void reason"]
    rss_before = start_memory_window()
    start = time.perf_counter()
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Sessions")
    sheet.append(header)
    for row in values:
        sheet.append(row)
    workbook.save(out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": len(values), "rss_delta_mb": peak_rss_mb() - rss_before,
            "rss_peak_mb": peak_rss_mb(), "bytes": out.stat().st_size}


def child(phase: str, args) -> dict:
    command = [sys.executable, "-m", "bench.bench_export", "--phase", phase, "--rows", str(args.rows),
               "--workdir", str(args.workdir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{phase} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    fastest = min(runs, key=lambda run: run["seconds"])
    return {**fastest, "rss_delta_mb": max(run["rss_delta_mb"] for run in runs),
            "rss_peak_mb": max(run["rss_peak_mb"] for run in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="session-use rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating (default 2)")
    parser.add_argument("--phase", choices=("export", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = plan(args.rows)
    if args.phase == "export":
        print(json.dumps(run_export(args.workdir / "bench.db", args.workdir / "export.xlsx")))
        return
    if args.phase == "raw":
        print(json.dumps(run_raw(sizes, args.workdir / "raw.xlsx")))
        return
    with tempfile.TemporaryDirectory(prefix="bench-export-") as workdir:
        args.workdir = Path(workdir)
        started = time.perf_counter()
        build(args.workdir / "bench.db", sizes)
        print(f"Built {sizes['rows']:,} session uses ({sizes['sessions']:,} sessions, {sizes['patients']:,} "
              f"patients, {sizes['batches']:,} batches) in {time.perf_counter() - started:.1f} s")
        runs = {"export": [], "raw": []}
        for _ in range(max(1, args.repeat)):
            for phase in runs:
                runs[phase].append(child(phase, args))
    export, raw = (best(runs[phase]) for phase in ("export", "raw"))
    print(f"Each measured {len(runs['export'])} times, alternating; best time and largest memory growth kept.")
    if export["rows"] != raw["rows"]:
        sys.exit(f"The export wrote {export['rows']:,} session rows, raw {raw['rows']:,}: not the same rows.")
    ratio = raw["seconds"] / export["seconds"]
    print()
    print(f"{'':<34}{'rows':>10}{'seconds':>10}{'rows/s':>10}{'peak RSS Δ MB':>15}{'file MB':>9}")
    for label, figures in (("audit workbook (from the database)", export), ("raw openpyxl write-only", raw)):
        rate = figures["rows"] / figures["seconds"]
        print(f"{label:<34}{figures['rows']:>10,}{figures['seconds']:>10.1f}{rate:>10,.0f}"
              f"{figures['rss_delta_mb']:>15.1f}{figures['bytes'] / 1e6:>9.1f}")
    print()
    print(f"ratio (export rows/s ÷ raw rows/s): {ratio:.2f}   target >= 0.70   {'OK' if ratio >= 0.7 else 'BELOW'}")
    print(f"export peak RSS growth: {export['rss_delta_mb']:.1f} MB (process peak {export['rss_peak_mb']:.0f} MB)"
          f"   target < 250 MB   {'OK' if export['rss_delta_mb'] < 250 else 'ABOVE'}")


if __name__ == "__main__":
    main()
