"""Export jobs under the README's deployment: the audit workbook of a seeded chain, asked for from the page.

    python -m bench.bench_jobs --scale 0.1                      # seeds a new database, measures, drops it
    python -m bench.bench_jobs --pg-database bench_pg_N         # an already seeded database (any scale)

On PostgreSQL with Redis (db `--redis-db`, emptied before and after): `gunicorn --workers 4
--bind 127.0.0.1:PORT wsgi:app` from the repository (gunicorn.conf.py as deployed) and one
`flask --app wsgi worker`. Measures

1. the scan API's p99 with no job running (`--clients` concurrent loopback clients, a chain
   pharmacist's bearer token, random batch and lot codes);
2. the audit workbook of the whole seeded period, asked for as an auditor through the pages
   (sign-in with the form's CSRF token, the export page's offer, the job's page), or through
   `POST /api/v1/exports` when the pages are missing, or as a last resort through
   `exports.jobs.request` in this process (the summary names the route taken): the scan API's
   p99 while the job runs, then the download (checked: size, SHA-256, opens in openpyxl);
3. the same workbook asked for again with no load (the queue alone): the job's rows/s
   (rows_written over finished_at - started_at of its row) against raw openpyxl write-only
   writing as many 10-column rows from memory (bench.bench_export's raw writer, in a fresh
   process on the same machine once the servers have stopped).

Targets: p99 during the job <= 2x idle; job rows/s >= 0.8x raw. Prints a JSON summary and writes
bench/results/jobs-postgresql.json (`-x<scale>` added for a scale other than 1.0, as bench.run).
The audit key is taken from AUDIT_KEY when set, else from instance/audit_key as when seeded.
"""

import argparse
import hashlib
import html
import http.cookiejar
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from .load import pooled, run_load
from .run import DEFAULT_PG_SERVER, RESULTS, ROOT, _free_port, machine, seed

SCAN_USER = "scale.pharmacist1"
AUDITOR = "bench.auditor"


# --- processes ------------------------------------------------------------------------------------


def start(args: list[str], env: dict, log: Path, nice: int = 0) -> subprocess.Popen:
    prefix = ["nice", "-n", str(nice)] if nice else []
    with open(log, "w") as out:
        return subprocess.Popen([*prefix, sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def wait_healthy(port: int, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn stopped (exit {server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer /healthz:\n{log.read_text()[-3000:]}")


# --- a browser's session, without a browser -------------------------------------------------------


class Browser:
    """GET and POST with a cookie jar, following redirects, as a signed-in person's browser would."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def open(self, path: str, data: dict | None = None, headers: dict | None = None, timeout: float = 120):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=timeout) as answer:
                return answer.status, answer.geturl(), answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.headers, error.read()

    @staticmethod
    def csrf(page: bytes) -> str:
        text = page.decode(errors="replace")
        found = (re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text)
                 or re.search(r'name="csrf_token" value="([^"]+)"', text))
        if not found:
            raise RuntimeError("no CSRF token on the page")
        return found.group(1)

    def sign_in(self, username: str, password: str) -> None:
        status, _url, _headers, page = self.open("/login")
        if status != 200:
            raise RuntimeError(f"GET /login answered {status}")
        status, url, _headers, _page = self.open("/login", {"username": username, "password": password,
                                                             "csrf_token": self.csrf(page)})
        if status != 200 or urllib.parse.urlsplit(url).path.startswith("/login"):
            raise RuntimeError(f"signing in as {username} failed ({status}, {url})")


def ask_on_the_page(browser: Browser, start_day: str, end_day: str) -> int | None:
    """The export page's way: GET the audit download, which offers a job for a large one; POST the offer.

    None when this deployment has no job pages (the GET would write the workbook in the request).
    """
    status, _url, _headers, _page = browser.open("/exports/jobs")
    if status == 404:
        return None
    query = urllib.parse.urlencode({"start": start_day, "end": end_day})
    status, _url, headers, page = browser.open(f"/exports/audit.xlsx?{query}", timeout=600)
    if status != 200 or "html" not in headers.get("Content-Type", ""):
        raise RuntimeError(f"the audit export page answered {status} {headers.get('Content-Type')}: "
                           f"{page[:300]!r}")
    text = page.decode(errors="replace")
    # The offer's form (not the navigation's sign-out form), sent with its hidden fields (CSRF and one-time keys).
    form = re.search(r'<form method="post" action="(/exports/audit\.xlsx[^"]*)">(.*?)</form>', text, re.S)
    if not form:
        raise RuntimeError(f"the audit export page offered no background job: {text[:500]}")
    fields = {html.unescape(name): html.unescape(value) for name, value in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(2))}
    status, url, _headers, page = browser.open(html.unescape(form.group(1)), fields)
    found = re.search(r"/exports/jobs/(\d+)$", urllib.parse.urlsplit(url).path)
    if status != 200 or not found:
        raise RuntimeError(f"asking for the job answered {status} at {url}: {page[:300]!r}")
    return int(found.group(1))


def ask_through_the_api(port: int, token: str, start_day: str, end_day: str) -> int | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/exports", method="POST",
        data=json.dumps({"kind": "audit", "start": start_day, "end": end_day}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.loads(answer.read())["id"]
    except urllib.error.HTTPError as error:
        if error.code in (404, 405):
            return None
        raise RuntimeError(f"POST /api/v1/exports answered {error.code}: {error.read()[:300]!r}") from error


def read_in_process(app, job_id: int) -> tuple[int, dict, bytes]:
    """The job's file straight from the file store (a deployment without the download routes)."""
    from compounding.extensions import db
    from compounding.models import User
    from compounding.services import export_jobs

    with app.app_context():
        auditor = db.session.scalar(sa.select(User).where(User.username == AUDITOR))
        _job, stream = export_jobs.opened_download(auditor, job_id)
        with stream:
            return 200, {"Content-Type": "(read from the file store)"}, stream.read()


def download(port: int, job_id: int, route: str, browser: Browser, token: str, out: Path, app) -> dict:
    if route == "in-process":
        status, headers, body = read_in_process(app, job_id)
    elif route == "page":
        status, _url, headers, body = browser.open(f"/exports/jobs/{job_id}/download", timeout=600)
    else:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/exports/{job_id}/download",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                status, headers, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
    if status != 200:
        raise RuntimeError(f"the download answered {status}: {body[:300]!r}")
    out.write_bytes(body)
    from openpyxl import load_workbook

    workbook = load_workbook(out, read_only=True)
    sheets = workbook.sheetnames
    workbook.close()
    return {"status": status, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": headers.get("Content-Type"), "sheets": sheets}


# --- the application, in this process (the database's side of things) ------------------------------


def fixtures(app, n_codes: int) -> dict:
    from compounding.extensions import db
    from compounding.models import AuditEvent, Batch, Lot, TreatmentSession, User
    from compounding.scale import SCALE_PASSWORD
    from compounding.services import users

    with app.app_context():
        scanner = db.session.scalar(sa.select(User).where(User.username == SCAN_USER))
        if scanner is None:
            raise SystemExit("No scale accounts: seed the database with `flask --app wsgi seed-scale` first.")
        auditor = db.session.scalar(sa.select(User).where(User.username == AUDITOR))
        if auditor is None:
            auditor = users.create_user(None, username=AUDITOR, display_name="Bench Auditor", role="auditor",
                                        password=SCALE_PASSWORD)
        order = sa.func.random()
        batch_codes = db.session.scalars(sa.select(Batch.code).order_by(order).limit(n_codes * 7 // 10)).all()
        lot_codes = db.session.scalars(sa.select(Lot.code).order_by(order).limit(n_codes - len(batch_codes))).all()
        codes = [*batch_codes, *lot_codes]
        random.Random(7).shuffle(codes)
        def naive(moment):  # aware on PostgreSQL, naive UTC on SQLite
            return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment

        first = min(naive(day) for day in (db.session.scalar(sa.select(sa.func.min(TreatmentSession.performed_at))),
                                    db.session.scalar(sa.select(sa.func.min(Batch.compounded_at))),
                                    db.session.scalar(sa.select(sa.func.min(AuditEvent.occurred_at)))) if day)
        last = max(naive(day) for day in (db.session.scalar(sa.select(sa.func.max(TreatmentSession.performed_at))),
                                   db.session.scalar(sa.select(sa.func.max(AuditEvent.occurred_at)))) if day)
        return {"scan_token": users.create_token(None, scanner, "bench-jobs"),
                "auditor_token": users.create_token(None, auditor, "bench-jobs"), "auditor_password": SCALE_PASSWORD,
                "codes": codes,
                # Clinic days around every dated row (a day either side for the clinic's time zone).
                "start": (first - timedelta(days=1)).date().isoformat(),
                "end": (max(last, datetime.now(UTC).replace(tzinfo=None)) + timedelta(days=1)).date().isoformat()}


def ask_in_process(app, start_day: str, end_day: str) -> int:
    from compounding.exports import jobs as export_requests
    from compounding.extensions import db
    from compounding.models import User

    with app.app_context():
        auditor = db.session.scalar(sa.select(User).where(User.username == AUDITOR))
        return export_requests.request(auditor, "audit", {"start": start_day, "end": end_day}).job.id


def job_state(app, job_id: int) -> dict:
    from compounding.extensions import db
    from compounding.models import ExportJob

    with app.app_context():
        job = db.session.get(ExportJob, job_id)
        state = {key: getattr(job, key) for key in ("status", "rows_written", "rows_expected", "attempts",
                                                     "started_at", "finished_at", "size", "sha256", "error")}
        db.session.remove()
        return state


def wait_for_job(app, job_id: int, seconds: float, during=None) -> dict:
    """Poll the job's row until it ends; `during()` is called meanwhile (a round of load) while it runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = job_state(app, job_id)
        if state["status"] not in ("queued", "running"):
            return state
        if during is not None and state["status"] == "running":
            during()
        else:
            time.sleep(0.5)
    raise SystemExit(f"export {job_id} did not end within {seconds:.0f} s: {job_state(app, job_id)}")


def job_rate(state: dict) -> dict:
    seconds = (state["finished_at"] - state["started_at"]).total_seconds()
    return {"rows": state["rows_written"], "seconds": round(seconds, 2),
            "rows_per_second": round(state["rows_written"] / seconds, 1), "attempts": state["attempts"],
            "bytes": state["size"]}


def raw_openpyxl(rows: int, workdir: Path) -> dict:
    """bench.bench_export's raw writer: `rows` rows of 10 columns from memory, openpyxl write-only, fresh process."""
    done = subprocess.run([sys.executable, "-m", "bench.bench_export", "--phase", "raw", "--rows", str(rows),
                           "--workdir", str(workdir)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"raw openpyxl failed:\n{done.stderr[-2000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rows": raw["rows"], "seconds": round(raw["seconds"], 2),
            "rows_per_second": round(raw["rows"] / raw["seconds"], 1), "bytes": raw["bytes"]}


def strip(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "latencies"}


# --- the run ----------------------------------------------------------------------------------------


def measure(url: str, args, workdir: Path) -> dict:
    import redis

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    queue = redis.Redis.from_url(redis_url)
    queue.flushdb()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JOBS_", "FLASK_"))}
    env.update({"DATABASE_URL": url, "REDIS_URL": redis_url, "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-jobs"),
                "FILE_STORE_PATH": str(workdir / "store"), "RATELIMIT_ENABLED": "0",
                "AUDIT_CHECKPOINT_FILE": str(workdir / "audit_checkpoints.jsonl"), "PYTHONPATH": str(ROOT)})
    env.pop("RATELIMIT_STORAGE_URI", None)
    env.pop("FILE_STORE_BUCKET", None)
    # This process reads and writes the same database (tokens, the auditor, the job's row), with no
    # statement limit: its counts are not a web request's.
    os.environ.update({**env, "DB_STATEMENT_TIMEOUT_MS": "0"})
    from compounding import create_app

    app = create_app()
    fx = fixtures(app, 1000)
    port = _free_port()
    logs = {"gunicorn": workdir / "gunicorn.log", "worker": workdir / "worker.log"}
    server = start(["gunicorn", "--workers", "4", "--bind", f"127.0.0.1:{port}", "wsgi:app"], env, logs["gunicorn"])
    worker = start(["flask", "--app", "wsgi", "worker"], env, logs["worker"], nice=args.worker_nice)
    result = {"port": port, "clients": args.clients, "worker_nice": args.worker_nice,
              "period": [fx["start"], fx["end"]]}
    try:
        wait_healthy(port, server, logs["gunicorn"])
        auth = {"Authorization": f"Bearer {fx['scan_token']}"}
        params = [{"code": code} for code in fx["codes"]]

        def load(seconds: float) -> dict:
            return run_load(port, "/api/v1/scan", params, headers=auth, clients=args.clients, requests=10**9,
                            seconds=seconds)

        load(3)  # warm-up: every worker's connections and caches
        print(f"scan API idle ({args.idle_seconds:g} s, {args.clients} clients)...", flush=True)
        idle = load(args.idle_seconds)
        result["scan_idle"] = strip(idle)

        browser = Browser(port)
        job_id = None
        try:
            browser.sign_in(AUDITOR, fx["auditor_password"])
            job_id = ask_on_the_page(browser, fx["start"], fx["end"])
            route = "page"
        except RuntimeError as error:
            result["page_error"] = str(error)
            print(f"the pages could not ask for it ({error}); trying the API", flush=True)
        if job_id is None:
            job_id, route = ask_through_the_api(port, fx["auditor_token"], fx["start"], fx["end"]), "api"
        if job_id is None:
            job_id, route = ask_in_process(app, fx["start"], fx["end"]), "in-process"
        result["asked_through"] = route
        print(f"export {job_id} asked for through {route}; scan API while it runs...", flush=True)
        rounds: list[dict] = []

        def one_round() -> None:
            measured = load(args.round_seconds)
            if job_state(app, job_id)["status"] == "running":  # the whole round ran beside the job
                rounds.append(measured)

        state = wait_for_job(app, job_id, args.timeout, during=one_round)
        if state["status"] != "done":
            raise SystemExit(f"export {job_id} ended {state['status']}: {state['error']}")
        if not rounds:
            print("the job ended before a whole round of load ran beside it: no p99 during the job", flush=True)
        during = pooled(rounds) if rounds else None
        result["scan_during_job"] = during
        result["p99_ratio"] = round(during["p99"] / idle["p99"], 2) if during else None
        result["job_under_load"] = job_rate(state)
        print(f"export {job_id} done: {result['job_under_load']}", flush=True)
        got = download(port, job_id, route, browser, fx["auditor_token"], workdir / "audit.xlsx", app)
        if got["sha256"] != state["sha256"] or got["bytes"] != state["size"]:
            raise SystemExit(f"the download is not the job's file: {got} vs {state}")
        result["download"] = got
        print(f"downloaded {got['bytes']:,} bytes, {len(got['sheets'])} sheets; the same workbook again, "
              "no load...", flush=True)
        # The same request again, alone: the worker's own speed (the first job has ended, so this is a new one).
        quiet_id = (ask_through_the_api(port, fx["auditor_token"], fx["start"], fx["end"]) if route == "api"
                    else ask_on_the_page(browser, fx["start"], fx["end"]) if route == "page"
                    else ask_in_process(app, fx["start"], fx["end"]))
        quiet = wait_for_job(app, quiet_id, args.timeout)
        if quiet["status"] != "done":
            raise SystemExit(f"export {quiet_id} ended {quiet['status']}: {quiet['error']}")
        result["job_alone"] = job_rate(quiet)
    finally:
        stop(worker)
        stop(server)
        queue.flushdb()
        queue.close()
        from compounding.extensions import db

        with app.app_context():
            db.engine.dispose()
    print("raw openpyxl write-only, the same number of rows...", flush=True)
    result["raw_openpyxl"] = raw_openpyxl(result["job_alone"]["rows"], workdir)
    raw_rate = result["raw_openpyxl"]["rows_per_second"]
    result["rate_ratio"] = round(result["job_alone"]["rows_per_second"] / raw_rate, 2)
    result["rate_ratio_under_load"] = round(result["job_under_load"]["rows_per_second"] / raw_rate, 2)
    result["targets"] = {"p99_ratio_max": 2.0, "rate_ratio_min": 0.8,
                         "p99_ok": result["p99_ratio"] is not None and result["p99_ratio"] <= 2.0,
                         "rate_ok": result["rate_ratio"] >= 0.8}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-server", default=DEFAULT_PG_SERVER, help="URL of the server's maintenance database")
    parser.add_argument("--pg-database", help="an already seeded database (default: a new one, seeded, dropped)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="seed-scale --scale to seed with, or the one --pg-database was seeded with (default 1.0)")
    parser.add_argument("--keep", action="store_true", help="keep the database it seeded")
    parser.add_argument("--redis-db", type=int, default=9, help="Redis database number, emptied (default 9)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent scan clients (default 8)")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--round-seconds", type=float, default=5.0, help="rounds of load while the job runs")
    parser.add_argument("--worker-nice", type=int, default=0, help="run the worker under `nice -n N`")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a job may take")
    args = parser.parse_args(argv)
    server = sa.make_url(args.pg_server)
    name, created, admin = args.pg_database, None, None
    summary = {"dialect": "postgresql", "date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": None, "scale": args.scale}
    if name is None:
        name = f"bench_jobs_{random.randrange(10**6)}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created = name
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        summary["machine"] = machine(url)
        if created:
            print(f"seeding {name} (scale {args.scale})...", flush=True)
            summary["seed"] = seed(url, args.scale)
        with tempfile.TemporaryDirectory(prefix="bench-jobs-") as workdir:
            summary.update(measure(url, args, Path(workdir)))
    finally:
        if created and not args.keep:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
        elif created:
            print(f"kept database {created}: rerun with --pg-database {created}")
        if admin is not None:
            admin.dispose()
    summary.pop("port", None)
    RESULTS.mkdir(exist_ok=True)
    scale = summary["scale"]
    name = f"jobs-postgresql{f'-x{scale:g}' if scale != 1.0 else ''}.json"
    (RESULTS / name).write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({key: summary[key] for key in (
        "asked_through", "period", "clients", "scan_idle", "scan_during_job", "p99_ratio", "job_under_load",
        "job_alone", "raw_openpyxl", "rate_ratio", "rate_ratio_under_load", "targets") if key in summary},
        indent=1, default=str))
    print(f"figures in bench/results/{name}")


if __name__ == "__main__":
    main()
