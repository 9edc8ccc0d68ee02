"""The audit workbook too large to wait for: asked for from the exports page, followed, downloaded."""

import io
from datetime import date, timedelta
from pathlib import Path

from jobkit import drain
from openpyxl import load_workbook
from playwright.sync_api import expect
from testkit import ARTIFACTS, login

from compounding.models import ExportJob

PHONE, TABLET = {"width": 390, "height": 844}, {"width": 768, "height": 1024}


def test_an_auditor_has_the_audit_workbook_prepared_in_the_background_and_downloads_it(page, live_server):
    app = live_server.app
    threshold = app.config["EXPORT_SYNC_MAX_ROWS"]
    app.config["EXPORT_SYNC_MAX_ROWS"] = 1  # the demo's year is small: any workbook is "large" here
    try:
        login(page, "auditor")
        page.goto("/exports/")
        form = page.get_by_role("form", name="Audit workbook")
        form.get_by_label("From (clinic day)").fill((date.today() - timedelta(days=400)).isoformat())
        form.get_by_label("To (clinic day, inclusive)").fill(date.today().isoformat())
        form.get_by_role("button", name="Download the audit workbook").click()
        expect(page.get_by_role("status").filter(has_text="it will be prepared in the background")).to_be_visible()
        page.get_by_role("button", name="Prepare the workbook in the background").click()
        expect(page.get_by_text("Waiting for a worker")).to_be_visible()
        job_path = page.url.split("://", 1)[1].split("/", 1)[1]
        job_id = int(job_path.rsplit("/", 1)[1])
        for width, viewport in (("390", PHONE), ("768", TABLET)):
            page.set_viewport_size(viewport)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
            page.screenshot(path=ARTIFACTS / f"export-job-waiting-{width}.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

        with app.app_context():
            assert drain(app) >= 1  # a worker takes it: here, this process, through the real queue
        # The page refreshes itself and then offers the file.
        download_link = page.get_by_role("link", name="Download audit-")
        expect(download_link).to_be_visible(timeout=10_000)
        expect(page.get_by_text("Kept until")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "export-job-done-1280.png", full_page=True)
        with page.expect_download() as download:
            download_link.click()
        assert download.value.suggested_filename.startswith("audit-")
        workbook = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()), read_only=True)
        assert {"Cover", "Audit trail", "Batches", "Sessions"} <= set(workbook.sheetnames)
        workbook.close()
        assert live_server.scalar(ExportJob.__table__.select().with_only_columns(ExportJob.status)
                                  .where(ExportJob.id == job_id)) == "done"

        page.goto("/exports/jobs")
        expect(page.get_by_role("link", name=f"#{job_id}")).to_be_visible()
        page.set_viewport_size(PHONE)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=ARTIFACTS / "export-jobs-390.png", full_page=True)
    finally:
        app.config["EXPORT_SYNC_MAX_ROWS"] = threshold
