"""In-process measurements through the Flask test client, on the database in DATABASE_URL.

Prints one JSON object (the figures) as its last line; `bench.run` reads it. Each request runs
in its own application context, as under a server, so no ORM state carries over between them.
"""

import json
import math
import random
import re
import sys
import tempfile
import time
import tracemalloc
from collections import Counter

import sqlalchemy as sa

from compounding import workbooks
from compounding.extensions import db
from compounding.models import Batch, BatchComponent, Lot, Site, TreatmentSession, User, Vial
from compounding.scale import SCALE_PASSWORD, TRACE_LOT_PREFIX
from compounding.services import batches, recalls, scan, signals, trace, users, vials
from compounding.services.clock import utcnow
from compounding.services.transaction import transaction

from . import cold_chain, people
from .app import make_app

PER_PAGE = 50


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"n": len(ordered), "p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2),
            "max": round(ordered[-1], 2)}


def timed(call, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _get(client, url: str, **kwargs):
    response = client.get(url, **kwargs)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
    return response


def _fixtures(app, n_codes: int) -> dict:
    with app.app_context():
        pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
        if pharmacist is None:
            raise SystemExit("No scale accounts: run `flask --app wsgi seed-scale` first.")
        token = users.create_token(None, pharmacist, "bench")
        random_order = sa.func.random()
        batch_codes = db.session.scalars(sa.select(Batch.code).order_by(random_order).limit(n_codes * 7 // 10)).all()
        lot_codes = db.session.scalars(sa.select(Lot.code).order_by(random_order).limit(n_codes - len(batch_codes)))
        codes = [*batch_codes, *lot_codes]
        random.Random(7).shuffle(codes)
        trace_lot_id = db.session.scalar(sa.select(Lot.id).where(Lot.supplier_lot_number.like(TRACE_LOT_PREFIX + "%"))
                                         .order_by(Lot.id.desc()).limit(1))
        counts = {name: db.session.scalar(sa.select(sa.func.count()).select_from(table)) for name, table in (
            ("lots", Lot), ("batches", Batch), ("vials", Vial),
            ("treatment_sessions", db.metadata.tables["treatment_sessions"]),
            ("session_uses", db.metadata.tables["session_uses"]),
            ("stock_movements", db.metadata.tables["stock_movements"]))}
        vial_codes = db.session.scalars(sa.select(Vial.code).order_by(random_order).limit(n_codes)).all()
        # The trace lot's batch with the most vials: its page, its trace down to the vials.
        trace_batch_id = db.session.scalar(
            sa.select(Batch.id).where(Batch.id.in_(sa.select(BatchComponent.batch_id)
                                                   .where(BatchComponent.lot_id == trace_lot_id)))
            .order_by(Batch.units.desc(), Batch.id).limit(1)) if trace_lot_id else None
        return {"token": token, "codes": codes, "batch_codes": batch_codes, "trace_lot_id": trace_lot_id,
                "counts": counts, "dialect": db.engine.dialect.name, "vial_codes": vial_codes,
                "trace_batch_id": trace_batch_id}


def _login(client, username: str = "scale.pharmacist1") -> None:
    page = _get(client, "/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page)
    response = client.post("/login", data={"username": username, "password": SCALE_PASSWORD,
                                           "csrf_token": token.group(1) if token else ""})
    if response.status_code != 302:
        raise RuntimeError(f"Sign-in failed ({response.status_code})")


def scan_vs_minimal(client, fx: dict) -> dict:
    """Each code through the scan API, and a batch code through the minimal route, interleaved."""
    auth = {"Authorization": f"Bearer {fx['token']}"}
    batch_codes = fx["batch_codes"]
    for code in fx["codes"][:50]:  # warm-up
        _get(client, "/api/v1/scan", query_string={"code": code}, headers=auth)
        _get(client, "/bench/minimal", query_string={"code": code})
    scan, minimal = [], []
    for i, code in enumerate(fx["codes"]):
        for which in ((0, 1) if i % 2 else (1, 0)):
            started = time.perf_counter()
            if which == 0:
                _get(client, "/api/v1/scan", query_string={"code": code}, headers=auth)
                scan.append((time.perf_counter() - started) * 1000)
            else:
                _get(client, "/bench/minimal", query_string={"code": batch_codes[i % len(batch_codes)]})
                minimal.append((time.perf_counter() - started) * 1000)
    return {"scan": percentiles(scan), "minimal": percentiles(minimal)}


def scan_code(code: str) -> str:
    """The scan service as the station and the API call it: which kind of thing the code resolved to.

    Today's `services.scan.resolve`, whatever it knows: once it reads vial codes, the same
    measure times the vial answer (the kinds counted say which it gave)."""
    return scan.resolve(code).kind


def vial_scans(client, app, fx: dict, api_only: bool = False) -> dict:
    """Vial codes through the scan API, interleaved with the minimal vial lookup; the scan service;
    and the vial's own verdict (`services.vials`: find the vial, judge its batch and then it)."""
    auth = {"Authorization": f"Bearer {fx['token']}"}
    codes = fx["vial_codes"]
    if not codes:
        return {}
    for code in codes[:50]:  # warm-up
        _get(client, "/api/v1/scan", query_string={"code": code}, headers=auth)
        _get(client, "/bench/minimal-vial", query_string={"code": code})
    api, minimal, kinds = [], [], Counter()
    for i, code in enumerate(codes):
        for which in ((0, 1) if i % 2 else (1, 0)):
            started = time.perf_counter()
            if which == 0:
                kinds[_get(client, "/api/v1/scan", query_string={"code": code}, headers=auth).get_json()["kind"]] += 1
                api.append((time.perf_counter() - started) * 1000)
            else:
                _get(client, "/bench/minimal-vial", query_string={"code": code})
                minimal.append((time.perf_counter() - started) * 1000)
    if api_only:
        return {"api": percentiles(api), "minimal": percentiles(minimal), "api_kinds": dict(kinds)}
    service, service_kinds, verdict, usable = [], Counter(), [], 0
    for code in codes:
        started = time.perf_counter()
        with app.app_context():
            service_kinds[scan_code(code)] += 1
            db.session.remove()
        service.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with app.app_context():
            vial = vials.find_vial(code)
            batch = db.session.get(Batch, vial.batch_id)
            at = utcnow()
            usable += not (batches.reasons_at(batch, at) + vials.vial_reasons_at(vial, batch, at))
            db.session.remove()
        verdict.append((time.perf_counter() - started) * 1000)
    return {"api": percentiles(api), "minimal": percentiles(minimal), "api_kinds": dict(kinds),
            "service": percentiles(service), "service_kinds": dict(service_kinds), "verdict": percentiles(verdict),
            "usable": usable}


def pages(client, app, fx: dict, n: int, counts: dict | None = None) -> dict:
    """First and deep pages of the lot, batch and session lists (deep: page 1,000, or the last one).

    `counts`: the rows the viewer's lists hold (default: every row)."""
    counts = counts or fx["counts"]
    lists = {"lots": ("/lots/", counts["lots"]), "batches": ("/batches/", counts["batches"])}
    endpoints = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    if "treatments.treatment_list" in endpoints:
        lists["sessions"] = (endpoints["treatments.treatment_list"], counts["treatment_sessions"])
    results = {}
    for name, (url, rows) in lists.items():
        deep = max(1, min(1000, math.ceil(rows / PER_PAGE)))
        results[name] = {"first": percentiles(timed(lambda u=url: _get(client, u, query_string={"page": 1}), n)),
                         "deep": percentiles(timed(lambda u=url, d=deep: _get(client, u, query_string={"page": d}),
                                                   n)),
                         "deep_page": deep}
    if "sessions" not in results:
        results["sessions"] = None
    return results


def traces(client, app, fx: dict, n: int) -> dict:
    """The lot's trace as the page and the API answer it (counts over all, a page of each list), and
    its whole workbook as the export builds it (no target: a download), with the growth of peak memory."""
    lot_id = fx["trace_lot_id"]
    if lot_id is None:
        return {}

    def service(**options):
        def run():
            with app.app_context():
                result = trace.trace_lot(lot_id, **options)
                db.session.remove()
                return result
        return run

    with app.app_context():
        scope = dict(trace.trace_lot(lot_id).counts)
    auth = {"Authorization": f"Bearer {fx['token']}"}
    results = {"scope": scope, "service": percentiles(timed(service(), n, warmup=1))}
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    if "api.trace_lot" in endpoints:
        results["api"] = percentiles(timed(lambda: _get(client, f"/api/v1/trace/lots/{lot_id}", headers=auth),
                                           n, warmup=1))
    if "recalls.trace_lot" in endpoints:
        results["page"] = percentiles(timed(lambda: _get(client, f"/trace/lots/{lot_id}"), n, warmup=1))

    def export():
        with app.app_context(), tempfile.TemporaryFile() as out:
            workbooks.trace_workbook(trace.trace_lot(lot_id, per_page=None), out)
            db.session.remove()

    results["export"] = percentiles(timed(export, max(2, n // 3), warmup=0))
    tracemalloc.start()  # once more, traced: the peak of what Python held while building it
    export()
    results["export"]["peak_traced_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
    return results


def batch_vials(client, app, fx: dict, n: int) -> dict:
    """The trace lot's batch with the most vials: its page (and how many of its vial codes it shows),
    its trace down to the vials through the service and the API."""
    batch_id = fx.get("trace_batch_id")
    if batch_id is None:
        return {}
    with app.app_context():
        batch = db.session.get(Batch, batch_id)
        codes = db.session.scalars(sa.select(Vial.code).where(Vial.batch_id == batch_id)).all()
        statuses = dict(Counter(db.session.scalars(sa.select(Vial.status).where(Vial.batch_id == batch_id))))
        result = {"code": batch.code, "vials": len(codes), "vial_statuses": statuses,
                  "scope": dict(trace.trace_batch(batch_id).counts)}
        db.session.remove()
    html = _get(client, f"/batches/{batch_id}").get_data(as_text=True)
    result["page_shows_vials"] = sum(code in html for code in codes)
    result["page"] = percentiles(timed(lambda: _get(client, f"/batches/{batch_id}"), n, warmup=1))

    def service():
        with app.app_context():
            found = trace.trace_batch(batch_id)
            db.session.remove()
        return found

    result["trace_service"] = percentiles(timed(service, n, warmup=1))
    auth = {"Authorization": f"Bearer {fx['token']}"}
    if "api.trace_batch" in {rule.endpoint for rule in app.url_map.iter_rules()}:
        result["trace_api"] = percentiles(timed(lambda: _get(client, f"/api/v1/trace/batches/{batch_id}",
                                                             headers=auth), n, warmup=1))
    return result


class _RolledBack(Exception):
    """Thrown at the end of a measured recall so that nothing of it is kept."""


def recall_with_vials(app, fx: dict, n: int) -> dict:
    """Opening a recall of the trace lot (every batch it reached and their vials recalled, signed,
    audited), then its scope as the recall's page reads it; rolled back each time, so the data stay."""
    lot_id = fx["trace_lot_id"]
    if lot_id is None:
        return {}
    opening, scope_times, scope, reached = [], [], {}, 0
    for _ in range(n):
        with app.app_context():
            pharmacist = db.session.scalar(sa.select(User).where(User.username == "scale.pharmacist1"))
            try:
                with transaction():
                    started = time.perf_counter()
                    recall = recalls.open_recall(pharmacist, reason="benchmark recall (rolled back)",
                                                 password=SCALE_PASSWORD, lot_id=lot_id)
                    db.session.flush()
                    opening.append((time.perf_counter() - started) * 1000)
                    reached = db.session.scalar(sa.select(sa.func.count()).select_from(Vial)
                                                .where(Vial.status == "recalled"))
                    started = time.perf_counter()
                    scope = dict(recalls.recall_scope(recall).counts)
                    scope_times.append((time.perf_counter() - started) * 1000)
                    raise _RolledBack
            except _RolledBack:
                pass
            recalled = db.session.scalar(sa.select(sa.func.count()).select_from(Vial)
                                         .where(Vial.status == "recalled"))
            db.session.remove()
    return {"open": percentiles(opening), "scope": percentiles(scope_times), "counts": scope,
            "recalled_vials": reached, "recalled_vials_after_rollback": recalled}


def quality_signals(client, app, fx, n: int) -> dict:
    """The API's full list of quality signals, and the service alone (the dashboard's first 20)."""

    def service():
        with app.app_context():
            found = signals.quality_signals(limit=20)
            db.session.remove()
        return found

    auth = {"Authorization": f"Bearer {fx['token']}"}
    results = {"service": percentiles(timed(service, n, warmup=1)),
               "api": percentiles(timed(lambda: _get(client, "/api/v1/quality-signals", headers=auth), n, warmup=1))}
    with app.app_context():
        flagged = signals.quality_signals(limit=10_000)
        results["flagged"] = {kind: sum(s.kind == kind for s in flagged) for kind in ("batch", "lot")}
        db.session.remove()
    return results


def one_site(app, fx: dict, n: int, n_codes: int) -> dict:
    """One site seen by its own pharmacist (a member of that site alone): its lot, batch and session
    lists (page 1 and a deep page of its own rows), its dashboard, and its vial codes through the scan
    API against the minimal vial lookup. The site: the hub MAIN, the busiest (seed-scale --sites N)."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "scale.main.pharmacist"))
        if user is None:
            return {}
        site_id = db.session.scalar(sa.select(Site.id).where(Site.code == "MAIN"))
        sites = db.session.scalar(sa.select(sa.func.count()).select_from(Site))
        counts = {name: db.session.scalar(sa.select(sa.func.count()).select_from(model)
                                          .where(model.site_id == site_id))
                  for name, model in (("lots", Lot), ("batches", Batch), ("vials", Vial),
                                      ("treatment_sessions", TreatmentSession))}
        token = users.create_token(None, user, "bench site")
        vial_codes = db.session.scalars(sa.select(Vial.code).where(Vial.site_id == site_id)
                                        .order_by(sa.func.random()).limit(n_codes)).all()
        db.session.commit()
        db.session.remove()
    client = app.test_client()
    _login(client, "scale.main.pharmacist")
    result = {"site": "MAIN", "sites": sites, "username": "scale.main.pharmacist", "counts": counts,
              "pages": pages(client, app, fx, n, counts),
              "dashboard": percentiles(timed(lambda: _get(client, "/"), n))}
    result["vial_scan"] = vial_scans(client, app, {**fx, "token": token, "vial_codes": vial_codes}, api_only=True)
    return result


def main() -> None:
    quick = "--quick" in sys.argv
    app = make_app()
    fx = _fixtures(app, 200 if quick else 1000)
    client = app.test_client()
    _login(client)
    results = {"dialect": fx["dialect"], "counts": fx["counts"], "trace_lot_id": fx["trace_lot_id"]}
    results["scan"] = scan_vs_minimal(client, fx)
    results["pages"] = pages(client, app, fx, 10 if quick else 30)
    results["trace"] = traces(client, app, fx, 5 if quick else 10)
    results["dashboard"] = percentiles(timed(lambda: _get(client, "/"), 10 if quick else 30))
    results["quality_signals"] = quality_signals(client, app, fx, 5 if quick else 20)
    results["vial_scan"] = vial_scans(client, app, fx)
    results["batch_vials"] = batch_vials(client, app, fx, 5 if quick else 10)
    results["recall"] = recall_with_vials(app, fx, 2 if quick else 3)
    results["site"] = one_site(app, fx, 10 if quick else 30, 200 if quick else 1000)
    results["cold_chain"] = {
        "report": cold_chain.month_report_figures(client, app, 5 if quick else 20, timed, percentiles, _get),
        "logger_import": cold_chain.import_figures(app, 2 if quick else 5, percentiles)}
    results["people"] = {
        "gate": people.gate_figures(app, 5 if quick else 20, percentiles),
        "pages": people.page_figures(client, app, 5 if quick else 20, timed, percentiles, _get),
        "documents": people.document_figures(app, 2 if quick else 5, percentiles)}
    results.update(token=fx["token"], codes=fx["codes"], batch_codes=fx["batch_codes"])
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
