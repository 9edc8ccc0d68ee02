"""In a real browser: the signature field of a back-dated session, and a held batch scanned red."""

from datetime import timedelta

import sqlalchemy as sa
from playwright.sync_api import expect
from testkit import login

from compounding.models import Batch, Hold
from compounding.services.clock import to_clinic, utcnow


def test_the_session_form_asks_for_a_signature_only_for_a_time_older_than_the_limit(page, live_server):
    with live_server.app.app_context():  # the clinic's wall clock, as the form is typed
        old, recent = (to_clinic(utcnow() - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M") for h in (80, 2))
    login(page, "pharmacist")
    page.goto("/treatments/patients")
    page.get_by_role("link", name="CH-1003").click()
    page.get_by_role("link", name="Record a treatment session").click()
    signature = page.get_by_label("Pharmacist's password (back-dated session)")
    expect(signature).to_be_hidden()
    when = page.get_by_label("Performed at")
    when.fill(old)
    when.dispatch_event("change")
    expect(signature).to_be_visible()
    when.fill(recent)
    when.dispatch_event("change")
    expect(signature).to_be_hidden()


def test_the_demo_batch_on_hold_scans_red_with_its_reason(page, live_server):
    held = live_server.scalar(sa.select(Batch.code).join(Hold, Hold.entity_id == Batch.id)
                              .where(Hold.entity_type == "batch", Hold.released_at.is_(None)))
    login(page, "practitioner")
    page.goto(f"/scan/?code={held}")
    card = page.locator("#scan-result")
    expect(card).to_have_attribute("data-usable", "no")
    expect(card).to_contain_text("DO NOT USE")
    expect(card).to_contain_text("on hold: adverse event: severe infection")
