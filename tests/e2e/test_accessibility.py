"""axe-core (vendored, served from /static like any script, so the CSP allows it) on the main pages."""

import sqlalchemy as sa
from testkit import login

from compounding.models import Lot, Patient

AXE = "/static/vendor/axe-core-4.14.1/axe.min.js"
BLOCKING = ("serious", "critical")


def blocking_violations(page) -> list[str]:
    """Serious and critical axe violations of the page as shown, one readable line per failing element."""
    page.add_script_tag(url=AXE)
    violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{page.url}: {v['id']} ({v['impact']}) at {' '.join(node['target'])}: {node['failureSummary']}"
            for v in violations if v["impact"] in BLOCKING for node in v["nodes"]]


def test_the_login_page_has_no_serious_accessibility_violation(page, live_server):
    page.goto("/login")
    assert blocking_violations(page) == []


def test_the_axe_check_would_see_a_serious_violation(page, live_server):
    page.goto("/login")
    page.evaluate("document.getElementById('username').labels.forEach(label => label.remove())")
    assert any("label" in line for line in blocking_violations(page))


def test_every_roles_dashboard_has_no_serious_accessibility_violation(page, live_server):
    found = []
    for role in ("pharmacist", "technician", "practitioner", "auditor", "admin"):
        login(page, role)
        page.goto("/")
        found += blocking_violations(page)
    assert found == [], "\n".join(found)


def test_the_main_pages_have_no_serious_accessibility_violation(page, live_server):
    prepared_id, prepared = live_server.released_batch(verify=False)
    recall_id = live_server.recall(live_server.released_batch()[0])
    quarantined = live_server.scalar(sa.select(Lot.id).where(Lot.supplier_lot_number == "HA-1002"))
    patient = live_server.scalar(sa.select(Patient.id).where(Patient.chart_number == "CH-1001"))
    login(page, "pharmacist")
    found = []
    for path in ("/lots/", f"/lots/{quarantined}", "/batches/new?formula_id=1&units=2", f"/batches/{prepared_id}",
                 "/treatments/patients", f"/treatments/patients/{patient}/sessions/new", f"/scan/?code={prepared}",
                 f"/recalls/{recall_id}", "/audit", "/people", "/people/me"):
        response = page.goto(path)
        assert response.ok, f"{path}: {response.status}"
        found += blocking_violations(page)
    assert found == [], "\n".join(found)
