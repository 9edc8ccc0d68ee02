"""Seed, measure, report: `python -m bench.run --db sqlite|postgresql|both [--skip-seed]` (see bench/README.md).

Per database: `flask --app wsgi seed-scale` (unless --skip-seed), the in-process measurements of
bench.measure (in a subprocess, so each database has its own app), a loopback load on gunicorn
with two workers, and bench.bench_export if it exists. Raw figures go to bench/results/<db>.json;
bench/RESULTS.md is rebuilt from every results file present.
"""

import argparse
import json
import os
import platform
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from .load import pooled, run_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# A scratch database in the system's temporary folder, kept between runs for --skip-seed.
DEFAULT_SQLITE = str(Path(tempfile.gettempdir()) / "bench_scale.db")
DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _env(url: str) -> dict:
    return {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}


def seed(url: str, scale: float, sites: int = 1) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "seed-scale", "--scale", str(scale),
                           "--sites", str(sites)],
                          cwd=ROOT, env=_env(url), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"seed-scale failed:\n{done.stdout}\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"seconds": round(time.perf_counter() - started, 1), "output": lines}


def measure(url: str, quick: bool) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.measure", *(["--quick"] if quick else [])],
                          cwd=ROOT, env=_env(url), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench.measure failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_load(url: str, fx: dict, quick: bool) -> dict:
    """gunicorn -w 2 on 127.0.0.1 under 50 concurrent clients: the scan API, then the minimal route."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                               "bench.wsgi:app"], cwd=ROOT, env=_env(url),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("gunicorn did not start")
        # Three rounds, scan then minimal, pooled per endpoint: a passing slowdown of the machine
        # lands on both sides instead of on whichever endpoint happened to be running.
        budget = {"requests": 400 if quick else 2000, "seconds": 8.0 if quick else 20.0}
        auth = {"Authorization": f"Bearer {fx['token']}"}
        scan_params = [{"code": code} for code in fx["codes"]]
        minimal_params = [{"code": code} for code in fx["batch_codes"]]
        run_load(port, "/api/v1/scan", scan_params[:200], headers=auth, requests=200, seconds=10)  # warm-up
        run_load(port, "/bench/minimal", minimal_params[:200], requests=200, seconds=10)
        scan, minimal = [], []
        for _ in range(3):
            scan.append(run_load(port, "/api/v1/scan", scan_params, headers=auth, **budget))
            minimal.append(run_load(port, "/bench/minimal", minimal_params, **budget))
        ratios = [round(s["p99"] / m["p99"], 2) for s, m in zip(scan, minimal, strict=True)]
        return {"scan": pooled(scan), "minimal": pooled(minimal), "workers": 2, "p99_ratio_by_round": ratios}
    finally:
        server.terminate()
        server.wait(30)


def export_bench(url: str) -> dict | None:
    """The audit-workbook benchmark written beside this one, if present: its own output, unchanged."""
    if not (Path(__file__).parent / "bench_export.py").exists():
        return None
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.bench_export"], cwd=ROOT, env=_env(url),
                          capture_output=True, text=True, timeout=3600)
    return {"returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1),
            "output": (done.stdout + done.stderr).strip().splitlines()[-25:]}


def _previous_export(dialect: str, quick: bool) -> dict | None:
    """--no-export: the audit-workbook figures of the last run that measured them (they do not depend on
    the database measured here), marked with that run's date."""
    earlier = RESULTS / f"{dialect}{'-quick' if quick else ''}.json"
    if not earlier.exists():
        return None
    before = json.loads(earlier.read_text())
    export = before.get("export")
    if export and not export.get("from_run"):
        export = {**export, "from_run": before.get("date")}
    return export


def machine(url_for_pg: str | None) -> dict:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0") if Path("/proc/meminfo").exists() else "0"
    info = {"nproc": os.cpu_count(), "memory_gib": round(int(memory) / 1024 / 1024, 1),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}
    if url_for_pg:
        engine = sa.create_engine(url_for_pg)
        with engine.connect() as connection:
            info["postgresql"] = connection.scalar(sa.text("SHOW server_version"))
        engine.dispose()
    return info


def run_one(dialect: str, args) -> dict:
    admin = None
    created = None
    if dialect == "sqlite":
        url = f"sqlite:///{args.sqlite_path}"
        if not args.skip_seed:
            for suffix in ("", "-wal", "-shm"):
                Path(args.sqlite_path + suffix).unlink(missing_ok=True)
    else:
        server = sa.make_url(args.pg_server)
        name = args.pg_database or f"bench_pg_{random.randrange(10**6)}"
        url = server.set(database=name).render_as_string(hide_password=False)
        if not args.skip_seed:
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            created = name
        elif not args.pg_database:
            raise SystemExit("--skip-seed on PostgreSQL needs --pg-database NAME (an already seeded database)")
    try:
        result = {"dialect": dialect, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": machine(url if dialect == "postgresql" else None), "scale": args.scale,
                  "sites": args.sites}
        if not args.skip_seed:
            print(f"[{dialect}] seeding (scale {args.scale})...", flush=True)
            result["seed"] = seed(url, args.scale, args.sites)
            print(f"[{dialect}] seeded in {result['seed']['seconds']} s", flush=True)
        print(f"[{dialect}] measuring in-process...", flush=True)
        result["measure"] = measure(url, args.quick)
        print(f"[{dialect}] gunicorn load...", flush=True)
        result["load"] = gunicorn_load(url, result["measure"], args.quick)
        # The audit-workbook benchmark builds its own SQLite database: once per run is enough.
        if not args.no_export and (dialect == "sqlite" or args.db == "postgresql"):
            result["export"] = export_bench(url)
        elif args.no_export:
            result["export"] = _previous_export(dialect, args.quick)
        for key in ("token", "codes", "batch_codes"):
            result["measure"].pop(key, None)
        return result
    finally:
        if created and not args.keep:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
        elif created:
            print(f"[postgresql] kept database {created}: rerun with --skip-seed --pg-database {created}")
        if admin is not None:
            admin.dispose()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--skip-seed", action="store_true", help="measure an already seeded database")
    parser.add_argument("--scale", type=float, default=1.0, help="seed-scale --scale (1.0: the default sizes)")
    parser.add_argument("--sites", type=int, default=1,
                        help="seed-scale --sites (spread over N sites; adds the per-site figures of the hub)")
    parser.add_argument("--sqlite-path", default=DEFAULT_SQLITE)
    parser.add_argument("--pg-server", default=DEFAULT_PG_SERVER, help="URL of the server's maintenance database")
    parser.add_argument("--pg-database", help="database name (default: a new bench_pg_N, dropped afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database it created")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for RESULTS.md)")
    parser.add_argument("--no-export", action="store_true", help="skip bench.bench_export even if present")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    for dialect in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
        result = run_one(dialect, args)
        # Another scale than the default is kept beside it (postgresql-x10.json), not over it.
        scaled = f"-x{args.scale:g}" if args.scale != 1.0 else ""
        name = f"{dialect}{scaled}{'-quick' if args.quick else ''}.json"
        (RESULTS / name).write_text(json.dumps(result, indent=1, default=str))
        print(f"[{dialect}] figures in bench/results/{name}", flush=True)
    if not args.quick:
        from .report import write_report

        write_report(RESULTS, Path(__file__).parent / "RESULTS.md")
        print("bench/RESULTS.md written")


if __name__ == "__main__":
    main()
