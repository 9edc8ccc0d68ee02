"""Export jobs from the pages: large downloads become jobs run by the real queue, followed, downloaded, expired."""

import html
import io
import json
import os
import re
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from jobkit import drain, queued
from openpyxl import load_workbook
from testkit import PASSWORD, TEST_DATABASE_URL, QueryCounter, sign_in, sign_in_session

from compounding import jobs
from compounding.exports import jobs as export_runner
from compounding.extensions import db
from compounding.models import AuditEvent, ExportJob
from compounding.models.access_log import PatientAccess
from compounding.services import export_jobs, recalls, treatments, users
from compounding.services.clock import clinic_today, utcnow

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BACKGROUND = pytest.mark.parametrize("config_overrides", [{"EXPORT_SYNC_MAX_ROWS": 1}], indirect=True)


@pytest.fixture
def used_batch(make_user, make_batch, make_patient):
    practitioner = make_user("practitioner", display_name="Dr Nina Costa")
    batch = make_batch()
    patient = make_patient()
    treatments.record_session(practitioner, patient_id=patient.id, uses=[{"batch_code": batch.code, "volume_ml": "2"}])
    return {"batch": batch, "patient": patient, "practitioner": practitioner}


def job(job_id: int) -> ExportJob:
    return db.session.get(ExportJob, job_id, populate_existing=True)


def workbook_of(client, job_id: int):
    response = client.get(f"/exports/jobs/{job_id}/download")
    try:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.mimetype == XLSX
        return response, load_workbook(io.BytesIO(response.get_data()))
    finally:
        response.close()


def column(ws, header) -> list:
    index = [cell.value for cell in ws[1]].index(header)
    return [row[index] for row in ws.iter_rows(min_row=2, values_only=True)]


def stored_file(app, finished: ExportJob) -> Path:
    return Path(app.config["FILE_STORE_PATH"]) / finished.storage_key


# --- every kind, through the real queue ---------------------------------------------------------------


def test_every_kind_is_written_by_the_queue_and_opens_as_its_workbook(app, client, used_batch, pharmacist):
    batch = used_batch["batch"]
    recall = recalls.open_recall(pharmacist, reason="Particles seen", password=PASSWORD, batch_id=batch.id)
    today = clinic_today().isoformat()
    asked = {
        "audit": ({"start": today, "end": today}, "Sessions", "Batch code", [batch.code]),
        "trace": ({"target_kind": "batch", "target_id": batch.id}, "Patients", "Patient chart",
                  [used_batch["patient"].chart_number]),
        "recall": ({"target_id": recall.id}, "Patients", "Patient chart", [used_batch["patient"].chart_number]),
        "lots": ({}, "Lots", "Lot code", None),
        "batches": ({"filters": {"status": "recalled"}}, "Batches", "Batch code", [batch.code]),
        "sessions": ({"start": today}, "Sessions", "Practitioner", ["Dr Nina Costa"]),
    }
    ids = {kind: export_runner.request(pharmacist, kind, raw).job.id for kind, (raw, *_) in asked.items()}
    assert queued(app) == len(asked)
    assert drain(app) == len(asked)
    sign_in(client, pharmacist)
    for kind, (_, sheet, header, expected) in asked.items():
        done = job(ids[kind])
        assert (done.status, done.error, done.attempts) == ("done", "", 1), kind
        response, wb = workbook_of(client, done.id)
        assert response.headers["Content-Disposition"].startswith(f'attachment; filename="{done.filename}"')
        assert response.headers["Cache-Control"] == "private, no-store"
        assert int(response.headers["Content-Length"]) == done.size == stored_file(app, done).stat().st_size
        values = column(wb[sheet], header)
        assert values == expected if expected is not None else len(values) == done.rows_written >= 1, kind
    assert job(ids["trace"]).filename == f"trace-{batch.code}.xlsx"
    assert load_workbook(stored_file(app, job(ids["recall"]))).sheetnames[-1] == "Attempts"


def test_a_range_with_no_rows_gives_a_workbook_with_its_headers(app, client, pharmacist):
    asked = export_runner.request(pharmacist, "sessions", {"start": "2020-01-01", "end": "2020-01-31"})
    drain(app)
    assert (job(asked.job.id).status, job(asked.job.id).rows_expected, job(asked.job.id).rows_written) == (
        "done", 0, 0)
    sign_in(client, pharmacist)
    _, wb = workbook_of(client, asked.job.id)
    assert wb["Sessions"].max_row == 1 and "Practitioner" in [cell.value for cell in wb["Sessions"][1]]


# --- the page: above the threshold, a job -------------------------------------------------------------


def test_under_the_threshold_the_download_is_sent_at_once(client, as_role, make_lot):
    as_role("technician")
    make_lot()
    response = client.get("/exports/lots.xlsx")
    assert response.status_code == 200 and response.mimetype == XLSX
    response.close()
    assert db.session.scalar(sa.select(sa.func.count(ExportJob.id))) == 0


@BACKGROUND
def test_above_the_threshold_the_download_offers_a_job_and_its_button_makes_one(app, client, as_role, make_lot):
    user = as_role("technician")
    make_lot()
    make_lot(release=False)
    make_lot(release=False)
    offer = client.get("/exports/lots.xlsx?status=quarantine&q=&page=3")
    page = offer.get_data(as_text=True)
    assert offer.status_code == 200 and offer.mimetype == "text/html"
    assert "This workbook has about 2 rows: it will be prepared in the background" in page
    assert re.search(r'<form method="post" action="/exports/lots.xlsx\?status=quarantine&amp;q=&amp;page=3">', page)
    assert 'name="csrf_token"' in page
    assert db.session.scalar(sa.select(sa.func.count(ExportJob.id))) == 0  # a GET never makes a job
    made = client.post("/exports/lots.xlsx?status=quarantine&q=&page=3")
    assert made.status_code == 302
    job_id = int(made.headers["Location"].rsplit("/", 1)[1])
    asked = job(job_id)
    assert (asked.kind, asked.requested_by_id, asked.status) == ("lots", user.id, "queued")
    assert export_jobs.params_of(asked)["filters"] == {"status": "quarantine"}
    # The same request while it waits: the same job.
    assert client.post("/exports/lots.xlsx?q=&status=quarantine").headers["Location"] == made.headers["Location"]
    waiting = client.get(f"/exports/jobs/{job_id}").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in waiting and "Waiting for a worker" in waiting
    assert "Filters" in waiting and "status: quarantine" in waiting and "<progress" in waiting
    assert " style=" not in waiting and "<script>" not in waiting
    drain(app)
    ready = client.get(f"/exports/jobs/{job_id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in ready and "Kept until" in ready
    assert f'href="/exports/jobs/{job_id}/download"' in ready
    _, wb = workbook_of(client, job_id)
    assert len(column(wb["Lots"], "Lot code")) == 2


@BACKGROUND
def test_asking_for_a_job_counts_nothing_and_the_worker_counts_as_it_starts(app, client, as_role, make_lot):
    as_role("technician")
    make_lot()
    make_lot()
    with QueryCounter(db.engine) as asking:
        made = client.post("/exports/lots.xlsx")
    assert made.status_code == 302
    assert not [s for s in asking.statements if "count(" in s.lower() and "lots" in s.lower()], asking.statements
    job_id = int(made.headers["Location"].rsplit("/", 1)[1])
    assert job(job_id).rows_expected is None
    assert "rows so far" in client.get(f"/exports/jobs/{job_id}").get_data(as_text=True)
    drain(app)
    assert (job(job_id).rows_expected, job(job_id).rows_written) == (2, 2)
    started = db.session.execute(sa.select(AuditEvent.action, AuditEvent.new_values).where(
        AuditEvent.entity_type == "export_job", AuditEvent.entity_id == job_id).order_by(AuditEvent.id)).all()
    assert [action for action, _ in started] == ["export.requested", "export.started", "export.done"]
    assert started[1][1]["attempt"] == 1


@pytest.mark.parametrize("config_overrides", [{"EXPORT_SYNC_MAX_ROWS": 1, "WTF_CSRF_ENABLED": True}],
                         indirect=True)
def test_the_offer_and_ask_again_forms_post_as_in_production(app, client, make_user, make_lot):
    """With CSRF and one-time submission keys on, the forms' own hidden fields are all a POST needs."""
    sign_in_session(client, make_user("technician"))
    make_lot()
    make_lot()

    def hidden_fields(page: str) -> dict:
        return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]+)">', page))

    offer = client.get("/exports/lots.xlsx").get_data(as_text=True)
    made = client.post("/exports/lots.xlsx", data=hidden_fields(offer))
    assert made.status_code == 302, made.get_data(as_text=True)[:300]
    job_id = int(made.headers["Location"].rsplit("/", 1)[1])
    export_jobs.fail(job_id, "The export failed: a test stopped it.")
    failed = client.get(f"/exports/jobs/{job_id}").get_data(as_text=True)
    again = client.post(f"/exports/jobs/{job_id}/again", data=hidden_fields(failed))
    assert again.status_code == 302, again.get_data(as_text=True)[:300]
    assert int(again.headers["Location"].rsplit("/", 1)[1]) != job_id


@pytest.mark.parametrize("config_overrides", [{"EXPORT_SYNC_MAX_ROWS": 0}], indirect=True)
def test_the_audit_and_trace_downloads_offer_a_job_too(app, client, as_role, used_batch):
    as_role("pharmacist")
    today = clinic_today().isoformat()
    for url in (f"/exports/audit.xlsx?start={today}&end={today}",
                f"/exports/trace/batches/{used_batch['batch'].id}.xlsx", f"/exports/sessions.xlsx?from={today}"):
        offer = client.get(url)
        assert offer.status_code == 200 and "prepared in the background" in offer.get_data(as_text=True), url
        assert client.post(url).status_code == 302
    assert client.post("/exports/audit.xlsx?start=2026-03-10&end=2026-03-01").status_code == 422
    assert drain(app) == 3
    assert {j.status for j in db.session.scalars(sa.select(ExportJob))} == {"done"}


def test_the_progress_written_by_the_heartbeat_shows_on_the_job_page(app, client, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {})
    claimed = export_jobs.claim(asked.job.id)
    job_id = claimed.id
    assert claimed.status == "running" and claimed.attempts == 1
    db.session.commit()  # in-memory SQLite: the heartbeat's connection is this one
    assert export_jobs.heartbeat(job_id, 12000, attempt=1)
    assert not export_jobs.heartbeat(job_id, 13000, attempt=2)  # another attempt's: not this worker's
    db.session.execute(sa.update(ExportJob).where(ExportJob.id == job_id).values(rows_expected=48000))
    db.session.commit()
    sign_in(client, technician)
    page = client.get(f"/exports/jobs/{job_id}").get_data(as_text=True)
    assert "12,000 of about 48,000 rows" in page
    assert '<progress class="w-100" value="12000" max="48000">' in page


@pytest.mark.skipif(TEST_DATABASE_URL.startswith("sqlite"),
                    reason="in-memory SQLite is one connection: the heartbeat's own connection needs a server")
def test_a_running_job_writes_its_progress_as_it_goes(app, make_lot, technician, monkeypatch):
    make_lot()
    make_lot()
    monkeypatch.setattr(export_runner, "HEARTBEAT_SECONDS", 0.02)
    seen = []
    real = export_runner.SPECS["lots"]

    def slow_build(user, params, out, progress):
        def counting(rows):
            progress(rows)
            threading.Event().wait(0.2)  # a beat or two while this row is written
            with db.engine.connect() as connection:
                seen.append(connection.scalar(sa.select(ExportJob.rows_written).where(ExportJob.id == asked.job.id)))
        return real.build(user, params, out, counting)

    monkeypatch.setitem(export_runner.SPECS, "lots", real.__class__(real.permission, real.prepare, slow_build))
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    assert job(asked.job.id).status == "done"
    assert seen and max(seen) >= 1


@pytest.mark.skipif(not TEST_DATABASE_URL.startswith("postgresql"), reason="the limits are PostgreSQL's")
@pytest.mark.parametrize("config_overrides", [{"DB_STATEMENT_TIMEOUT_MS": 1000, "DB_CONNECT_TIMEOUT": 1}],
                         indirect=True)
def test_a_job_run_by_a_serving_process_reads_past_the_request_limits(app, technician, make_lot, monkeypatch):
    """Tests build the app as a web server does: an answer waited for 1 s + 2 s at most, then given up."""
    make_lot()
    real = export_runner.SPECS["lots"]

    def slow(user, params, out, progress):
        db.session.execute(sa.text("SELECT pg_sleep(3.5)"))  # past the server's limit and the client's
        return real.build(user, params, out, progress)

    monkeypatch.setitem(export_runner.SPECS, "lots", real.__class__(real.permission, real.prepare, slow))
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    assert job(asked.job.id).status == "done", job(asked.job.id).error
    with pytest.raises(sa.exc.OperationalError, match="statement timeout|did not answer"):  # requests keep them
        db.session.execute(sa.text("SELECT pg_sleep(3.5)"))
    db.session.rollback()


@pytest.mark.skipif(TEST_DATABASE_URL.startswith("sqlite"),
                    reason="in-memory SQLite is one connection: the heartbeat's own connection needs a server")
@pytest.mark.parametrize("config_overrides", [{"JOBS_STALE_SECONDS": 1}], indirect=True)
def test_the_heartbeat_goes_on_while_the_file_is_hashed_and_kept(app, technician, make_lot, monkeypatch):
    from compounding import storage

    make_lot()
    monkeypatch.setattr(export_runner, "HEARTBEAT_SECONDS", 0.1)
    folder = storage.store()
    real_put = folder.put_file
    recovered = []

    def slow_put(key, source, content_type):
        time.sleep(2.5)  # a large workbook on a slow bucket: longer than JOBS_STALE_SECONDS
        real_put(key, source, content_type)
        with app.app_context():
            recovered.append(export_jobs.recover())

    monkeypatch.setattr(folder, "put_file", slow_put)
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    ended = job(asked.job.id)
    assert (ended.status, ended.attempts) == ("done", 1), (recovered, ended.error)
    assert recovered == [{"requeued": 0, "failed": 0, "enqueued": 0}]


@pytest.mark.skipif(TEST_DATABASE_URL.startswith("sqlite"), reason="two connections at once need a server")
def test_two_identical_requests_at_the_same_moment_make_one_job(app, technician):
    barrier = threading.Barrier(2, timeout=30)
    answers = []
    user_id, user_class = technician.id, type(technician)  # read here: the test's session is not the threads'
    db.session.commit()

    def ask():
        with app.app_context():
            try:
                user = db.session.get(user_class, user_id)
                barrier.wait()
                requested = export_runner.request(user, "lots", {})
                answers.append((requested.job.id, requested.created))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len({job_id for job_id, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False, True]
    assert db.session.scalar(sa.select(sa.func.count(ExportJob.id))) == 1


# --- failures, others' jobs, permissions ---------------------------------------------------------------


def test_a_requester_deactivated_before_it_runs_gets_a_failure_with_its_reason(app, client, make_user, technician):
    admin = make_user("admin")
    asked = export_runner.request(technician, "lots", {})
    users.set_active(admin, technician, False, reason="left the clinic")
    drain(app)
    failed = job(asked.job.id)
    assert failed.status == "failed" and "no longer" in failed.error
    users.set_active(admin, technician, True, reason="came back")
    sign_in(client, technician)
    page = client.get(f"/exports/jobs/{failed.id}").get_data(as_text=True)
    assert "The export failed: The person who asked for this export may no longer export it." in page
    assert f'action="/exports/jobs/{failed.id}/again"' in page
    response = client.get(f"/exports/jobs/{failed.id}/download")
    assert response.status_code == 409 and "This export failed" in response.get_data(as_text=True)


def test_an_unexpected_error_shows_a_reference_not_the_statement_and_its_values(app, client, technician, make_lot,
                                                                              monkeypatch, caplog):
    make_lot()
    real = export_runner.SPECS["lots"]

    def broken(user, params, out, progress):
        raise sa.exc.OperationalError("SELECT name FROM patients WHERE chart_number = %(chart)s",
                                      {"chart": "CH-00042"}, Exception("server closed the connection"))

    monkeypatch.setitem(export_runner.SPECS, "lots", real.__class__(real.permission, real.prepare, broken))
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    failed = job(asked.job.id)
    assert failed.status == "failed"
    assert failed.error == (f"The export failed because of an unexpected error (reference E{failed.id}-1); an "
                            "administrator can find it in the worker's log.")
    sign_in(client, technician)
    page = client.get(f"/exports/jobs/{failed.id}").get_data(as_text=True)
    assert f"reference E{failed.id}-1" in page
    assert not [text for text in ("[SQL:", "CH-00042", "sqlalche.me", "SELECT") if text in page]
    logged = [record for record in caplog.records if f"E{failed.id}-1" in record.getMessage()]
    assert logged and "CH-00042" in logged[0].exc_text


def test_a_file_store_that_refuses_fails_the_job_without_naming_its_folder_or_key(app, technician, make_lot,
                                                                                 monkeypatch):
    make_lot()
    monkeypatch.setattr(export_runner, "PUT_PAUSE_SECONDS", 0.01)
    store = Path(app.config["FILE_STORE_PATH"])
    store.mkdir(parents=True, exist_ok=True)
    (store / "exports").write_text("a file where the exports' folder goes")
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    failed = job(asked.job.id)
    assert failed.status == "failed" and failed.error.startswith("The file store could not keep the workbook")
    assert str(store) not in failed.error and "exports/" not in failed.error and ".xlsx" not in failed.error


def test_a_file_store_that_refuses_once_is_tried_again(app, technician, make_lot, monkeypatch):
    from compounding import storage

    make_lot()
    monkeypatch.setattr(export_runner, "PUT_PAUSE_SECONDS", 0.01)
    store = Path(app.config["FILE_STORE_PATH"])
    store.mkdir(parents=True, exist_ok=True)
    obstruction = store / "exports"
    obstruction.write_text("a file where the exports' folder goes")
    folder = storage.store()
    real_put, tries = folder.put_file, []

    def put_then_clear(key, source, content_type):
        tries.append(key)
        try:
            real_put(key, source, content_type)  # the real folder store, refusing the first time
        finally:
            if obstruction.is_file():
                obstruction.unlink()

    monkeypatch.setattr(folder, "put_file", put_then_clear)
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    assert (job(asked.job.id).status, len(tries)) == ("done", 2)


@pytest.mark.parametrize("config_overrides", [{"JOBS_STALE_SECONDS": 60}], indirect=True)
def test_the_worker_writes_in_a_folder_of_its_own_swept_of_what_a_stopped_worker_left(
        app, technician, make_lot, monkeypatch, tmp_path):
    make_lot()
    work = tmp_path / "export-work"
    app.config["EXPORT_WORK_PATH"] = str(work)
    seen = []
    real = export_runner.SPECS["lots"]

    def watching(user, params, out, progress):
        seen.append(Path(out.name).parent)
        return real.build(user, params, out, progress)

    monkeypatch.setitem(export_runner.SPECS, "lots", real.__class__(real.permission, real.prepare, watching))
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    assert job(asked.job.id).status == "done" and seen == [work] and list(work.iterdir()) == []
    left, live = work / "export-job-left.xlsx", work / "export-job-live.xlsx"
    left.write_bytes(b"patient rows of a worker killed an hour ago")
    live.write_bytes(b"a running export's rows")
    an_hour_ago = time.time() - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    assert "exports.sweep" in jobs.jobs(app).huey._startup  # run by each worker as it starts
    jobs.jobs(app).huey._startup["exports.sweep"]()
    assert not left.exists() and live.exists()


def test_someone_else_s_job_is_not_found(app, client, make_user, technician):
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    sign_in(client, make_user("technician"))
    for response in (client.get(f"/exports/jobs/{asked.job.id}"), client.get(f"/exports/jobs/{asked.job.id}/download"),
                     client.post(f"/exports/jobs/{asked.job.id}/again")):
        assert response.status_code == 404
    assert "#" + str(asked.job.id) not in client.get("/exports/jobs").get_data(as_text=True)


def test_a_requester_who_lost_the_permission_may_not_download(app, client, make_user, pharmacist):
    admin = make_user("admin")
    asked = export_runner.request(pharmacist, "sessions", {})
    drain(app)
    users.update_user(admin, pharmacist, display_name=pharmacist.display_name, role="technician")
    sign_in(client, pharmacist)
    response = client.get(f"/exports/jobs/{asked.job.id}/download")
    assert response.status_code == 403 and "no longer" in response.get_data(as_text=True)


def all_cells(wb) -> set[str]:
    return {str(value) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for value in row
            if value is not None}


def test_a_workbook_written_with_names_is_refused_to_its_requester_once_they_may_not_see_names(
        app, client, make_user, make_patient, used_batch, pharmacist):
    admin = make_user("admin")
    named = make_patient(name="Jane Identifiable")
    treatments.record_session(used_batch["practitioner"], patient_id=named.id,
                              uses=[{"batch_code": used_batch["batch"].code, "volume_ml": "1"}])
    asked = export_runner.request(pharmacist, "trace", {"target_kind": "batch", "target_id": used_batch["batch"].id})
    drain(app)
    assert job(asked.job.id).identified
    sign_in(client, pharmacist)
    _, wb = workbook_of(client, asked.job.id)
    assert "Jane Identifiable" in all_cells(wb)
    users.update_user(admin, pharmacist, display_name=pharmacist.display_name, role="technician")
    response = client.get(f"/exports/jobs/{asked.job.id}/download")
    assert response.status_code == 403
    assert "written when you could see patients' names; ask for it again" in html.unescape(response.get_data(
        as_text=True))
    # Asked again as a technician: written by chart number alone, and theirs to download.
    again = export_runner.request_again(pharmacist, job(asked.job.id))
    drain(app)
    assert not job(again.job.id).identified
    _, wb = workbook_of(client, again.job.id)
    assert "Jane Identifiable" not in all_cells(wb) and named.chart_number in all_cells(wb)


def test_a_workbook_of_sites_its_requester_no_longer_sees_is_refused(app, client, make_user, make_lot):
    from sitekit import add_site

    from compounding.services import sites

    lyon = add_site("LYON")
    tech = make_user("technician")
    sites.set_user_sites(None, tech.id, [sites.main_site().id, lyon.id], all_sites=False)
    make_lot(site_id=lyon.id, supplier_lot_number="LYON-ONLY", actor=tech, release=False)
    asked = export_runner.request(tech, "lots", {})
    drain(app)
    assert sorted(json.loads(job(asked.job.id).site_ids)) == sorted([sites.main_site().id, lyon.id])
    sign_in(client, tech)
    sites.set_user_sites(None, tech.id, [sites.main_site().id], all_sites=False)
    response = client.get(f"/exports/jobs/{asked.job.id}/download")
    assert response.status_code == 403 and "sites you no longer see" in response.get_data(as_text=True)
    # A whole-chain workbook needs the whole chain still.
    chain = make_user("technician")
    sites.set_user_sites(None, chain.id, [sites.main_site().id], all_sites=True)
    whole = export_runner.request(chain, "lots", {})
    drain(app)
    assert job(whole.job.id).site_ids is None
    sites.set_user_sites(None, chain.id, [sites.main_site().id], all_sites=False)
    other = app.test_client()
    sign_in(other, chain)
    assert other.get(f"/exports/jobs/{whole.job.id}/download").status_code == 403


def test_the_job_page_names_the_sites_the_workbook_covered_once_written(app, client, make_user, make_lot):
    from sitekit import add_site

    from compounding.services import sites

    lyon = add_site("LYON")
    tech = make_user("technician")
    sites.set_user_sites(None, tech.id, [sites.main_site().id, lyon.id], all_sites=False)
    make_lot(site_id=lyon.id, supplier_lot_number="LYON-ONLY", actor=tech, release=False)
    asked = export_runner.request(tech, "lots", {})
    sign_in(client, tech)
    sites_line = re.compile(r"<dt[^>]*>Sites</dt><dd[^>]*>([^<]*)</dd>")
    assert sites_line.search(client.get(f"/exports/jobs/{asked.job.id}").get_data(as_text=True))[1] == "LYON, MAIN"
    sites.set_user_sites(None, tech.id, [sites.main_site().id], all_sites=False)  # before it runs
    drain(app)
    assert sites_line.search(client.get(f"/exports/jobs/{asked.job.id}").get_data(as_text=True))[1] == "MAIN"
    _, wb = workbook_of(client, asked.job.id)
    assert "LYON-ONLY" not in all_cells(wb)


def test_downloading_a_workbook_with_patients_is_recorded_as_patient_access(app, client, used_batch, pharmacist):
    asked = export_runner.request(pharmacist, "trace", {"target_kind": "batch", "target_id": used_batch["batch"].id})
    drain(app)
    sign_in(client, pharmacist)
    workbook_of(client, asked.job.id)
    noted = db.session.scalars(sa.select(PatientAccess).where(PatientAccess.user_id == pharmacist.id)).all()
    assert [(row.action, row.target_type, row.target_id) for row in noted] == [
        ("export.trace", "batch", used_batch["batch"].id)]


# --- expiry --------------------------------------------------------------------------------------------


def test_an_expired_export_is_deleted_from_the_store_and_answers_410_then_can_be_asked_again(
        app, client, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {"filters": {"q": "SL"}})
    drain(app)
    done = job(asked.job.id)
    path = stored_file(app, done)
    assert path.exists()
    assert export_jobs.expire_due(now=done.expires_at - timedelta(seconds=1)) == 0
    assert export_jobs.expire_due(now=done.expires_at + timedelta(seconds=1)) == 1
    assert not path.exists()
    assert job(done.id).status == "expired"
    sign_in(client, technician)
    response = client.get(f"/exports/jobs/{done.id}/download")
    assert response.status_code == 410
    assert "has been deleted. Ask for it again." in response.get_data(as_text=True)
    page = client.get(f"/exports/jobs/{done.id}").get_data(as_text=True)
    assert "Expired" in page and "Ask again" in page
    again = client.post(f"/exports/jobs/{done.id}/again")
    new_id = int(again.headers["Location"].rsplit("/", 1)[1])
    assert new_id != done.id
    assert job(new_id).request_key == done.request_key and job(new_id).status == "queued"
    drain(app)
    assert job(new_id).status == "done"


def test_expiry_marks_the_row_first_and_a_file_it_could_not_delete_is_deleted_at_a_later_run(
        app, client, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    done = job(asked.job.id)
    path = stored_file(app, done)
    path.unlink()
    (path / "in-the-way").mkdir(parents=True)  # the file cannot be deleted: a folder is in its place
    later = done.expires_at + timedelta(seconds=1)
    assert export_jobs.expire_due(now=later) == 1
    expired = job(done.id)
    assert (expired.status, expired.expired_at, expired.file_deleted_at) == ("expired", later, None)
    assert expired.storage_key == done.storage_key  # kept: the next run tries again
    sign_in(client, technician)
    assert client.get(f"/exports/jobs/{done.id}/download").status_code == 410
    (path / "in-the-way").rmdir()
    path.rmdir()
    path.write_bytes(b"the file, deletable now")
    assert export_jobs.expire_due(now=later + timedelta(minutes=10)) == 0  # nothing more to mark
    assert not path.exists() and job(done.id).file_deleted_at == later + timedelta(minutes=10)
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.entity_type == "export_job",
                                                                   AuditEvent.entity_id == done.id)).all()
    assert actions[-2:] == ["export.expired", "export.file_deleted"]


def test_an_export_past_its_time_answers_410_before_the_scheduled_expiry_runs(app, client, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {})
    drain(app)
    db.session.execute(sa.update(ExportJob).where(ExportJob.id == asked.job.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    sign_in(client, technician)
    response = client.get(f"/exports/jobs/{asked.job.id}/download")
    assert response.status_code == 410 and "has been deleted. Ask for it again." in response.get_data(as_text=True)
    page = client.get(f"/exports/jobs/{asked.job.id}").get_data(as_text=True)
    assert "Expired" in page and f'href="/exports/jobs/{asked.job.id}/download"' not in page
    stored_file(app, job(asked.job.id)).unlink()  # deleted, the row not marked yet: still 410, not 503
    assert client.get(f"/exports/jobs/{asked.job.id}/download").status_code == 410


def test_asking_again_repeats_exactly_what_each_kind_asked(app, used_batch, pharmacist):
    batch = used_batch["batch"]
    recall = recalls.open_recall(pharmacist, reason="Particles seen", password=PASSWORD, batch_id=batch.id)
    for kind, raw in [("audit", {"start": "2026-01-01", "end": "2026-01-31"}),
                      ("trace", {"target_kind": "batch", "target_id": batch.id}), ("recall", {"target_id": recall.id}),
                      ("lots", {"filters": {"status": "released"}}), ("batches", {}),
                      ("sessions", {"end": "2026-02-01", "filters": {"practitioner_id": pharmacist.id}})]:
        first = export_runner.request(pharmacist, kind, raw).job
        export_jobs.fail(first.id, "stopped for the test")
        again = export_runner.request_again(pharmacist, job(first.id))
        assert again.created and again.job.id != first.id, kind
        assert (again.job.request_key, again.job.params) == (first.request_key, first.params), kind


# --- a worker that stops, a lost enqueue ---------------------------------------------------------------


def _worker_died(job_id: int, app) -> None:
    """The job was claimed by a worker that then stopped: its heartbeat is long past."""
    jobs.jobs(app).huey.flush()  # that worker had taken the task off the queue
    export_jobs.claim(job_id)
    past = utcnow() - timedelta(seconds=app.config["JOBS_STALE_SECONDS"] + 60)
    db.session.execute(sa.update(ExportJob).where(ExportJob.id == job_id).values(heartbeat_at=past))
    db.session.commit()


def test_a_job_whose_worker_stopped_is_run_again_from_the_start(app, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {})
    _worker_died(asked.job.id, app)
    assert queued(app) == 0
    assert export_jobs.recover() == {"requeued": 1, "failed": 0, "enqueued": 0}
    assert job(asked.job.id).status == "queued" and queued(app) == 1
    drain(app)
    done = job(asked.job.id)
    assert (done.status, done.attempts, done.rows_written) == ("done", 2, 1)


def test_a_job_whose_worker_stopped_too_often_fails_with_a_message(app, technician):
    asked = export_runner.request(technician, "lots", {})
    _worker_died(asked.job.id, app)
    limit = app.config["JOBS_MAX_ATTEMPTS"]
    db.session.execute(sa.update(ExportJob).where(ExportJob.id == asked.job.id).values(attempts=limit))
    db.session.commit()
    assert export_jobs.recover() == {"requeued": 0, "failed": 1, "enqueued": 0}
    failed = job(asked.job.id)
    assert failed.status == "failed" and f"stopped {limit} times" in failed.error
    assert queued(app) == 0


def test_a_job_whose_enqueue_was_lost_is_put_on_the_queue_again(app, make_lot, technician):
    make_lot()
    asked = export_runner.request(technician, "lots", {})
    jobs.jobs(app).huey.flush()
    assert export_jobs.recover() == {"requeued": 0, "failed": 0, "enqueued": 0}  # not waiting long yet
    later = utcnow() + timedelta(seconds=app.config["JOBS_STALE_SECONDS"] + 1)
    assert export_jobs.recover(now=later) == {"requeued": 0, "failed": 0, "enqueued": 1}
    assert drain(app) == 1
    assert job(asked.job.id).status == "done"


def _asked_minutes_ago(job_id: int, minutes: int) -> None:
    db.session.execute(sa.update(ExportJob).where(ExportJob.id == job_id)
                       .values(requested_at=utcnow() - timedelta(minutes=minutes, seconds=5)))
    db.session.commit()


def test_a_job_no_worker_takes_says_so_on_its_page_and_on_the_admin_dashboard(app, client, technician, make_user):
    asked = export_runner.request(technician, "lots", {})
    other = export_runner.request(technician, "batches", {})
    sign_in(client, technician)
    fresh = client.get(f"/exports/jobs/{asked.job.id}").get_data(as_text=True)
    assert "Waiting for a worker" in fresh and "No worker has taken it" not in fresh
    admin = app.test_client()
    sign_in(admin, make_user("admin"))
    assert 'id="exports-waiting"' not in admin.get("/").get_data(as_text=True)  # not waiting long yet
    _asked_minutes_ago(asked.job.id, 7)
    _asked_minutes_ago(other.job.id, 3)
    page = " ".join(html.unescape(client.get(f"/exports/jobs/{asked.job.id}").get_data(as_text=True)).split())
    assert "No worker has taken it for 7 minutes: an administrator must check that the background worker" in page
    assert "flask --app wsgi worker" in page
    dashboard = " ".join(html.unescape(admin.get("/").get_data(as_text=True)).split())
    assert 'id="exports-waiting"' in dashboard
    assert "2 exports wait for a worker, the oldest since" in dashboard
    assert 'id="exports-waiting"' not in client.get("/").get_data(as_text=True)  # for admins
    drain(app)
    assert 'id="exports-waiting"' not in admin.get("/").get_data(as_text=True)


# --- the list of one's jobs ------------------------------------------------------------------------------


def test_the_jobs_list_shows_one_s_own_newest_first_in_a_few_queries(app, client, technician, make_user):
    for number in range(55):
        export_runner.request(technician, "lots", {"filters": {"q": f"n{number}"}})
    export_runner.request(make_user("technician"), "lots", {"filters": {"q": "someone else"}})
    sign_in(client, technician)
    with QueryCounter(db.engine) as counter:
        page = client.get("/exports/jobs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "55 in all." in html
    numbers = [int(n) for n in re.findall(r'href="/exports/jobs/(\d+)"', html)]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 50
    assert len(counter.statements) <= 6, counter.statements
    second = client.get("/exports/jobs?page=2").get_data(as_text=True)
    assert len(re.findall(r'href="/exports/jobs/(\d+)"', second)) == 5
    assert 'href="/exports/jobs"' in client.get("/").get_data(as_text=True)


def test_the_command_line_lists_the_latest_jobs_with_their_status(app, runner, technician):
    assert runner.invoke(args=["export", "jobs"]).output == "No export jobs.\n"
    waiting = export_runner.request(technician, "lots", {"filters": {"q": "a"}}).job.id
    failing = export_runner.request(technician, "batches", {}).job.id
    export_jobs.fail(failing, "The file store was full.")
    result = runner.invoke(args=["export", "jobs", "--limit", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [int(line.split()[0]) for line in lines] == [failing, waiting]
    assert "failed" in lines[0] and "The file store was full." in lines[0]
    assert technician.username in lines[1] and "queued" in lines[1] and "0 of about 0 rows" not in lines[1]
