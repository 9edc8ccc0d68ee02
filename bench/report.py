"""bench/RESULTS.md from the figures in bench/results/*.json: every measure, its ratio to its limit."""

import json
from pathlib import Path

DIALECTS = (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"),
            ("postgresql-x10", "PostgreSQL at ten times the default data (targets: seed < 15 min, trace of the "
                               "busiest lot < 300 ms, scan p50 <= 1.5x a one-query route, deep pages <= 2x)"))


def _rows(r: dict) -> list[tuple[str, str, str, float | None, float]]:
    """(measure, target, figure, ratio, limit of the ratio); ratio ≤ limit holds the target."""
    m, rows = r["measure"], []
    scan, minimal = m["scan"]["scan"], m["scan"]["minimal"]
    for q in ("p50", "p99"):
        rows.append((f"Scan API {q} vs minimal route, {scan['n']} codes (test client)", "≤ 2×",
                     f"{scan[q]} ms vs {minimal[q]} ms", scan[q] / minimal[q], 2))
    for name, label in (("lots", "Lot list"), ("batches", "Batch list"), ("sessions", "Session list")):
        page = m["pages"].get(name)
        if not page:
            rows.append((f"{label}: page does not exist", "", "—", None, 1))
            continue
        first, deep = page["first"], page["deep"]
        rows.append((f"{label} page 1, p50", "< 50 ms", f"{first['p50']} ms (p99 {first['p99']})",
                     first["p50"] / 50, 1))
        rows.append((f"{label} page {page['deep_page']:,}, p50", "< 50 ms", f"{deep['p50']} ms (p99 {deep['p99']})",
                     deep["p50"] / 50, 1))
        rows.append((f"{label} deep vs first page (p50)", "≤ 2×", f"{deep['p50']} / {first['p50']} ms",
                     deep["p50"] / first["p50"], 2))
    trace = m.get("trace") or {}
    if trace:
        scope = trace["scope"]
        what = _scope(scope)
        rows.append((f"trace_lot service p50 ({what})", "< 300 ms", f"{trace['service']['p50']} ms",
                     trace["service"]["p50"] / 300, 1))
        if "api" in trace:
            rows.append(("GET /api/v1/trace/lots/{id} p50 (same lot, first page of 100)", "< 300 ms",
                         f"{trace['api']['p50']} ms", trace["api"]["p50"] / 300, 1))
        if "page" in trace:
            rows.append(("Trace page `/trace/lots/{id}` p50 (same lot, first page of 100)", "< 300 ms",
                         f"{trace['page']['p50']} ms", trace["page"]["p50"] / 300, 1))
        if "export" in trace:
            export = trace["export"]
            rows.append(("Trace workbook of the same lot, every row (.xlsx export), p50", "",
                         f"{export['p50']} ms, peak Python memory {export['peak_traced_mb']} MB", None, 1))
    rows += _vial_rows(m)
    rows += _cold_chain_rows(m)
    rows += _people_rows(m)
    dashboard = m["dashboard"]
    rows.append(("Pharmacist dashboard `/` p50", "< 100 ms", f"{dashboard['p50']} ms (p99 {dashboard['p99']})",
                 dashboard["p50"] / 100, 1))
    signals = m.get("quality_signals")
    if signals:
        flagged = signals.get("flagged", {})
        what = f"{flagged.get('batch', 0):,} batches and {flagged.get('lot', 0):,} lots flagged"
        rows.append((f"Quality signals service p50 ({what})", "< 100 ms",
                     f"{signals['service']['p50']} ms (p99 {signals['service']['p99']})",
                     signals["service"]["p50"] / 100, 1))
        rows.append(("GET /api/v1/quality-signals p50 (every signal)", "", f"{signals['api']['p50']} ms", None, 1))
    load = r.get("load")
    if load:
        s, n = load["scan"], load["minimal"]
        rounds = f", {s['rounds']} alternating rounds" if s.get("rounds") else ""
        rows.append((f"gunicorn -w 2, 50 clients{rounds}: scan API", "", f"{s['rps']} req/s, p50 {s['p50']} ms, "
                     f"p99 {s['p99']} ms ({s['n']} ok, {s['errors']} errors)", None, 1))
        rows.append((f"gunicorn -w 2, 50 clients{rounds}: minimal route", "", f"{n['rps']} req/s, p50 {n['p50']} ms, "
                     f"p99 {n['p99']} ms ({n['n']} ok, {n['errors']} errors)", None, 1))
        rows.append(("gunicorn: minimal req/s ÷ scan req/s", "≤ 2×", f"{n['rps']} / {s['rps']}",
                     n["rps"] / s["rps"], 2))
        by_round = load.get("p99_ratio_by_round")
        rows.append(("gunicorn: scan p99 ÷ minimal p99" + (f" (rounds: {', '.join(map(str, by_round))})"
                                                          if by_round else ""),
                     "≤ 2×", f"{s['p99']} / {n['p99']} ms", s["p99"] / n["p99"], 2))
    return rows


def _site_rows(m: dict) -> list[tuple]:
    """One site seen by its own pharmacist: its lists (deep page against page 1), its dashboard, its vials scanned."""
    site = m.get("site")
    if not site:
        return []
    rows = []
    for name, label in (("lots", "lot list"), ("batches", "batch list"), ("sessions", "session list")):
        page = site["pages"].get(name)
        if not page:
            continue
        first, deep = page["first"], page["deep"]
        rows.append((f"Site {site['site']} {label} page 1, p50", "< 50 ms", f"{first['p50']} ms (p99 {first['p99']})",
                     first["p50"] / 50, 1))
        rows.append((f"Site {site['site']} {label} page {page['deep_page']:,} vs page 1 (p50)", "≤ 2×",
                     f"{deep['p50']} / {first['p50']} ms", deep["p50"] / first["p50"], 2))
    dashboard = site["dashboard"]
    rows.append((f"Site {site['site']} pharmacist's dashboard `/` p50", "< 100 ms",
                 f"{dashboard['p50']} ms (p99 {dashboard['p99']})", dashboard["p50"] / 100, 1))
    vial = site.get("vial_scan")
    if vial:
        api, minimal = vial["api"], vial["minimal"]
        rows.append((f"Site {site['site']} scan API p50, {api['n']} of its vial codes (answered: "
                     f"{_kinds(vial['api_kinds'])}) vs minimal vial lookup", "≤ 2×",
                     f"{api['p50']} ms vs {minimal['p50']} ms", api["p50"] / minimal["p50"], 2))
    return rows


def _scope(scope: dict) -> str:
    """What a trace reached: its batches, vials (once trace lists them), sessions and patients."""
    parts = [f"{scope[k]:,} {k}" for k in ("batches", "vials", "sessions", "patients") if k in scope]
    return ", ".join(parts)


def _kinds(kinds: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))


def _vial_rows(m: dict) -> list[tuple]:
    """Scanning a vial, a batch's page and trace down to its vials, a recall reaching every vial."""
    rows = []
    vial = m.get("vial_scan")
    if vial:
        api, minimal = vial["api"], vial["minimal"]
        for q in ("p50", "p99"):
            rows.append((f"Scan API {q}, {api['n']} vial codes (answered: {_kinds(vial['api_kinds'])}) vs minimal "
                         "vial lookup", "≤ 2×", f"{api[q]} ms vs {minimal[q]} ms", api[q] / minimal[q], 2))
        rows.append((f"Scan service `scan.resolve` p50, vial codes (answered: {_kinds(vial['service_kinds'])})", "",
                     f"{vial['service']['p50']} ms (p99 {vial['service']['p99']})", None, 1))
        rows.append((f"Vial verdict p50: `vials.find_vial`, batch `reasons_at`, `vial_reasons_at` "
                     f"({vial['usable']} of {vial['verdict']['n']} usable)", "",
                     f"{vial['verdict']['p50']} ms (p99 {vial['verdict']['p99']})", None, 1))
    batch = m.get("batch_vials")
    if batch:
        what = f"{batch['code']}, {batch['vials']} vials"
        rows.append((f"Batch page `/batches/{{id}}` p50 ({what}, {batch['page_shows_vials']} vial codes shown)",
                     "< 50 ms", f"{batch['page']['p50']} ms (p99 {batch['page']['p99']})",
                     batch["page"]["p50"] / 50, 1))
        rows.append((f"trace_batch service p50 ({what}; {_scope(batch['scope'])})", "< 300 ms",
                     f"{batch['trace_service']['p50']} ms", batch["trace_service"]["p50"] / 300, 1))
        if "trace_api" in batch:
            rows.append(("GET /api/v1/trace/batches/{id} p50 (same batch)", "< 300 ms",
                         f"{batch['trace_api']['p50']} ms", batch["trace_api"]["p50"] / 300, 1))
    recall = m.get("recall")
    if recall:
        vials = (f"{recall['recalled_vials']:,} vials recalled with them" if "recalled_vials" in recall
                 else "vials not counted")
        rows.append((f"Open a recall of the trace lot ({_scope(recall['counts'])}; {vials}), rolled back, p50", "",
                     f"{recall['open']['p50']} ms (n {recall['open']['n']})", None, 1))
        rows.append(("`recalls.recall_scope` of that open recall p50", "< 300 ms", f"{recall['scope']['p50']} ms",
                     recall["scope"]["p50"] / 300, 1))
    return rows


def _cold_chain_rows(m: dict) -> list[tuple]:
    """A fridge's month report (query and chart, page, workbook) and a logger's month imported."""
    cold = m.get("cold_chain")
    if not cold:
        return []
    rows = []
    report = cold.get("report") or {}
    if report.get("skipped"):
        rows.append((f"Month report: not measured ({report['skipped']})", "< 300 ms", "—", None, 1))
    elif report:
        what = f"{report['readings']:,} readings of {report['month']}"
        rows.append((f"Month report query + chart p50 ({what}; SVG {report['chart_bytes']:,} bytes)", "< 300 ms",
                     f"{report['service']['p50']} ms (p99 {report['service']['p99']})",
                     report["service"]["p50"] / 300, 1))
        rows.append(("Month report page `/cold-chain/locations/{id}/report` p50 (same month)", "< 300 ms",
                     f"{report['page']['p50']} ms (p99 {report['page']['p99']})", report["page"]["p50"] / 300, 1))
        rows.append(("Month workbook (.xlsx) of the same month p50", "", f"{report['workbook']['p50']} ms", None, 1))
    logger = cold.get("logger_import") or {}
    if logger.get("skipped"):
        rows.append((f"Logger month import: not measured ({logger['skipped']})", "< 2 s", "—", None, 1))
    elif logger:
        rows.append((f"Logger month import `reading_files.import_file` p50 ({logger['rows']:,} rows, "
                     f"{logger['imported']:,} kept; rolled back)", "< 2 s",
                     f"{logger['import']['p50']} ms (p99 {logger['import']['p99']})",
                     logger["import"]["p50"] / 2000, 1))
    return rows


def _people_rows(m: dict) -> list[tuple]:
    """The bench gate (qualifications and equipment), the team and equipment pages, documents."""
    people = m.get("people")
    if not people:
        return []
    rows = []
    gate = people.get("gate") or {}
    if gate.get("skipped"):
        rows.append((f"Compounding gate: not measured ({gate['skipped']})", "≤ 1.10×", "—", None, 1))
    elif gate:
        rows.append(("`compound_batch` with qualifications and equipment checked, vs without, p50 (1 unit, "
                     f"{gate['statements']['gated']} vs {gate['statements']['plain']} statements)", "≤ 1.10×",
                     f"{gate['gated']['p50']} vs {gate['plain']['p50']} ms", gate["ratio"], 1.10))
    pages = people.get("pages") or {}
    for key, label in (("team_page", f"Team page `/people` p50 ({pages.get('people', 0):,} people who compound)"),
                       ("team_due_page", "Team page, due within 30 days, p50"),
                       ("equipment_page", f"Equipment list `/equipment` p50 ({pages.get('equipment_items', 0):,} "
                                          "items)")):
        figure = pages.get(key) or {}
        if figure.get("skipped"):
            rows.append((f"{label}: not measured ({figure['skipped']})", "< 300 ms", "—", None, 1))
        elif figure:
            rows.append((label, "< 300 ms", f"{figure['p50']} ms (p99 {figure['p99']})", figure["p50"] / 300, 1))
    docs = people.get("documents") or {}
    if docs.get("skipped"):
        rows.append((f"Documents: not measured ({docs['skipped']})", "", "—", None, 1))
    for key, label, limit in (("pdf", "PDF", 3.0), ("jpeg", "12-megapixel JPEG (saved again without metadata)", None)):
        figure = docs.get(key)
        if not figure:
            continue
        size = docs[f"{key}_bytes"] / 1024 / 1024
        total = figure["attach"]["p50"] + figure["read"]["p50"]
        if limit:
            rows.append((f"Document attach + read back, {label} {size:.1f} MB, vs the same bytes as a plain file",
                         f"≤ {limit:g}×", f"{figure['attach']['p50']} + {figure['read']['p50']} ms vs "
                         f"{figure['plain_file']['p50']} ms", figure["ratio"], limit))
        else:
            rows.append((f"Document attach + read back, {label} {size:.1f} MB", "< 2 s",
                         f"{figure['attach']['p50']} + {figure['read']['p50']} ms", total / 2000, 1))
    return rows


def _jobs_section(path: Path) -> list[str]:
    """bench.bench_jobs at scale 1.0: the audit workbook as an export job under the deployment."""
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    mc, idle, busy = r["machine"], r["scan_idle"], r["scan_during_job"]
    alone, raw, loaded = r["job_alone"], r["raw_openpyxl"], r["job_under_load"]
    minimum = r["targets"]["rate_ratio_min"]
    rate_verdict = f"{r['rate_ratio']:.2f} {'✔' if r['rate_ratio'] >= minimum else '✘'}"
    return [
        "## Export jobs under the deployment (PostgreSQL, Redis)", "",
        f"- Run {r['date']} by `python -m bench.bench_jobs` (seed-scale --scale {r['scale']}); machine: "
        f"{mc['nproc']} CPUs, load average at start {mc['load_average']}. gunicorn --workers 4 and one "
        f"`flask --app wsgi worker` on Redis; {r['clients']} scan clients; the audit workbook of "
        f"{r['period'][0]}..{r['period'][1]} asked for through the {r['asked_through']}.",
        "", "| measure | target | figure | ratio |", "|---|---|---|---|",
        f"| scan API p99 while the job runs ÷ idle | ≤ 2× | {busy['p99']} ms vs {idle['p99']} ms | "
        f"{_verdict(r['p99_ratio'], r['targets']['p99_ratio_max'])} |",
        f"| job rows/s alone ÷ raw openpyxl write-only | ≥ {minimum}× | {alone['rows_per_second']:,} vs "
        f"{raw['rows_per_second']:,} rows/s ({alone['rows']:,} rows, {alone['seconds']} s) | {rate_verdict} |",
        f"| job rows/s under the scan load | | {loaded['rows_per_second']:,} rows/s ({loaded['seconds']} s, "
        f"{loaded['bytes']:,} bytes) | |",
        "",
    ]


def _verdict(ratio, limit) -> str:
    if ratio is None:
        return ""
    if ratio <= limit:
        return f"{ratio:.2f} ✔"
    return f"{ratio:.2f} ✘ ({(ratio / limit - 1) * 100:.0f} % over)"


def write_report(results: Path, out: Path) -> None:
    found = {key: json.loads((results / f"{key}.json").read_text()) for key, _ in DIALECTS
             if (results / f"{key}.json").exists()}
    lines = ["# Benchmark results", "",
             "Written by `python -m bench.run` (see README.md: method, and why what misses misses). "
             "Ratio: the figure divided by its limit's reference (the minimal route, the first page, or the time "
             "limit); ✔ when within the target.", ""]
    for key, label in DIALECTS:
        r = found.get(key)
        if not r:
            continue
        mc = r["machine"]
        counts = r["measure"]["counts"]
        lines += [f"## {label}", "",
                  f"- Run {r['date']}; machine: {mc['nproc']} CPUs, {mc['memory_gib']} GiB, Python {mc['python']}, "
                  f"SQLite {mc['sqlite']}" + (f", PostgreSQL {mc['postgresql']}" if mc.get("postgresql") else "")
                  + f"; load average at start {mc['load_average']}.",
                  "- Data: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items())
                  + f" (seed-scale --scale {r['scale']}"
                  + (f" --sites {r['sites']}" if r.get("sites", 1) > 1 else "") + ")."]
        if r.get("seed"):
            target = "< 900 s at ten times" if r.get("scale", 1) >= 10 else "< 180 s on SQLite"
            lines.append(f"- `flask --app wsgi seed-scale` took **{r['seed']['seconds']} s** (target {target}).")
        lines += ["", "| measure | target | figure | ratio |", "|---|---|---|---|"]
        lines += [f"| {name} | {target} | {figure} | {_verdict(ratio, limit)} |"
                  for name, target, figure, ratio, limit in _rows(r)]
        site = r["measure"].get("site")
        if site:
            held = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in site["counts"].items())
            lines += ["", f"One site of {site['sites']}: {site['site']} (the hub, the busiest), seen by "
                      f"`{site['username']}`, a member of it alone: {held}.", "",
                      "| measure | target | figure | ratio |", "|---|---|---|---|"]
            lines += [f"| {name} | {target} | {figure} | {_verdict(ratio, limit)} |"
                      for name, target, figure, ratio, limit in _site_rows(r["measure"])]
        if r.get("seed"):
            lines += ["", "<details><summary>seed-scale stages</summary>", "", "```", *r["seed"]["output"], "```", "",
                      "</details>"]
        if not r.get("export") and r["dialect"] == "postgresql":
            lines += ["", "The audit workbook benchmark builds its own SQLite database: see the SQLite section."]
        if r.get("export"):
            earlier = f", figures of the run of {r['export']['from_run']}" if r["export"].get("from_run") else ""
            lines += ["", f"Audit workbook benchmark (bench.bench_export, exit {r['export']['returncode']}, "
                      f"{r['export']['seconds']} s{earlier}):", "", "```", *r["export"]["output"], "```"]
        lines.append("")
    lines += _jobs_section(results / "jobs-postgresql.json")
    comparisons = results.parent / "COMPARISONS.md"
    if comparisons.exists():  # hand-written before/after figures of changes that promise "no slower"
        lines += [comparisons.read_text().rstrip(), ""]
    out.write_text("\n".join(lines))
