"""Browser journeys: one seeded live server and one headless Chromium, shared by the whole session.

The rest of the suite runs on PostgreSQL when TEST_DATABASE_URL is set; the live server here
always uses its own SQLite file, so the two passes of CI never share data or fight over a
database (and truncating PostgreSQL between tests cannot pull rows from under a page).
"""

import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import sync_playwright
from testkit import ARTIFACTS, VIEWPORT, base_config, tool_missing
from werkzeug.serving import WSGIRequestHandler, make_server

from compounding import create_app
from compounding.demo import DEMO_PASSWORD, seed_demo
from compounding.extensions import db

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPORTS = pytest.StashKey[dict]()


# --- the live server --------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        """Every page's requests would otherwise flood the captured output of a failing test."""


def _whole_responses(app):
    """Hand the development server each response whole, its source closed before a byte is sent.

    When a browser drops a connection mid-response (a page navigating away while its favicon is
    still coming), Werkzeug's server gives up without closing the response, and the open static
    file surfaces later as a ResourceWarning in whichever test is running. Reading the body here
    and closing it at once leaves nothing open, whatever the browser does.
    """

    def middleware(environ, start_response):
        body = app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    return middleware


@dataclass
class LiveServer:
    app: object
    url: str

    def scalar(self, statement):
        with self.app.app_context():
            return db.session.scalar(statement)

    def execute(self, statement):
        with self.app.app_context():
            return db.session.execute(statement).all()

    def _user(self, username: str):
        """Inside an app context only."""
        from compounding.models import User

        return db.session.scalar(sa.select(User).where(User.username == username))

    def released_batch(self, formula_code: str = "MESO-VCHA", units: int = 1, *, verify: bool = True
                       ) -> tuple[int, str]:
        """A batch compounded by the technician and (unless told) verified by pharmacist2, via the services."""
        from compounding.demo import bench_equipment_ids
        from compounding.models import Formula
        from compounding.services import batches, sites

        with self.app.app_context():
            formula = db.session.scalar(sa.select(Formula).where(Formula.code == formula_code,
                                                                 Formula.status == "approved"))
            # As at the bench: the FEFO lots, each container scanned.
            allocations = [{"lot_id": lot_id, "quantity": quantity}
                           for component in batches.propose(formula, units)
                           for lot_id, quantity in component.proposed.items()]
            # MAIN has equipment registered: the demo's balance and hood, as the bench names them.
            batch = batches.compound_batch(self._user("technician"), formula.id, units, allocations=allocations,
                                           scanned_lot_ids=[a["lot_id"] for a in allocations], require_scan=True,
                                           equipment_ids=bench_equipment_ids(sites.main_site().id))
            if verify:
                batches.verify_batch(self._user("pharmacist2"), batch.id, DEMO_PASSWORD)
            return batch.id, batch.code

    def recall(self, batch_id: int, reason: str = "e2e: supplier alert") -> int:
        from compounding.services import recalls

        with self.app.app_context():
            return recalls.open_recall(self._user("pharmacist"), reason=reason, password=DEMO_PASSWORD,
                                       batch_id=batch_id).id

    def patient(self, chart_number: str, name: str = "") -> int:
        from compounding.services import treatments

        with self.app.app_context():
            return treatments.create_patient(self._user("practitioner"),
                                             {"chart_number": chart_number, "name": name}).id

    def treat(self, patient_id: int, batch_code: str, volume_ml: str = "1") -> int:
        from compounding.services import treatments

        with self.app.app_context():
            return treatments.record_session(
                self._user("practitioner"), patient_id=patient_id, indication="e2e",
                uses=[{"batch_code": batch_code, "volume_ml": Decimal(volume_ml), "area": "face"}]).id


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    database = tmp_path_factory.mktemp("e2e") / "e2e.sqlite"
    app = create_app(base_config(SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}", TESTING=False,
                                 WTF_CSRF_ENABLED=True, SERVER_NAME=None,
                                 PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
                                 # As a clinic would see it: the README's screenshots come from here.
                                 CLINIC_NAME="Demo Aesthetic Clinic"))
    with app.app_context():
        db.create_all()
        for _ in seed_demo():
            pass
        db.session.remove()
    # Port 0: the system picks a free port, so parallel runs on one machine never collide.
    server = make_server("127.0.0.1", 0, _whole_responses(app), threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        tool_missing(f"{CHROMIUM} is missing: apt-get install chromium fonts-liberation")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def is_csp_violation(message) -> bool:
    return "Content Security Policy" in message.text


@pytest.fixture
def csp_violations() -> list[str]:
    """Every "Content Security Policy" console message of the test's pages (asserted empty at the end)."""
    return []


@pytest.fixture
def new_context(browser, live_server, csp_violations):
    """Open more browser contexts (another user, another scale); all close at the end of the test."""
    contexts = []

    def open_context(**options):
        context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT, **options)
        context.on("console", lambda m: csp_violations.append(m.text) if is_csp_violation(m) else None)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context, request, csp_violations):
    page = new_context().new_page()
    yield page
    call = request.node.stash.get(REPORTS, {}).get("call")
    if call is not None and call.failed and not page.is_closed():
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name[:120]}.png", full_page=True)
    assert not csp_violations, "Content Security Policy violations:\n" + "\n".join(csp_violations)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report
