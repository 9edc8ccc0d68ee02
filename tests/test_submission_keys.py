"""A form submission counts once: the one-time key every state-changing form carries (DESIGN 10.1 rule 11)."""

import re

import pytest
import sqlalchemy as sa
from testkit import sign_in

from compounding.extensions import db
from compounding.models import TreatmentSession


def hidden_inputs(html: str, marker: str) -> dict[str, str]:
    """The hidden fields of the page's POST form whose opening tag holds `marker` (an id, an action)."""
    forms = re.findall(r"<form\b([^>]*)>(.*?)</form>", html, flags=re.S)
    for attributes, body in forms:
        if 'method="post"' not in attributes or marker not in attributes:
            continue
        fields = {}
        for tag in re.findall(r"<input\b[^>]*>", body):
            if 'type="hidden"' in tag:
                name = re.search(r'name="([^"]*)"', tag).group(1)
                fields[name] = re.search(r'value="([^"]*)"', tag).group(1)
        return fields
    raise AssertionError(f"no POST form {marker} in the page")


def session_rows(batch, practitioner) -> dict[str, str]:
    return {"practitioner_id": str(practitioner.id), "performed_at": "", "indication": "submental fat",
            "notes": "", "uses-0-batch_code": batch.code, "uses-0-volume_ml": "1", "uses-0-area": "chin"}


def sessions() -> list[TreatmentSession]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(TreatmentSession).order_by(TreatmentSession.id)))


@pytest.fixture
def practitioner(make_user):
    return make_user("practitioner")


def test_the_same_session_form_posted_twice_records_one_session_and_leads_to_it(
        client, practitioner, make_patient, make_batch):
    patient, batch = make_patient(), make_batch()
    sign_in(client, practitioner)
    url = f"/treatments/patients/{patient.id}/sessions/new"
    page = client.get(url).get_data(as_text=True)
    form = {**hidden_inputs(page, 'id="treatment-form"'), **session_rows(batch, practitioner)}

    first = client.post(url, data=form)
    assert first.status_code == 302
    again = client.post(url, data=form)  # a retrying proxy, or the browser's "send again"

    assert len(sessions()) == 1
    assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "already saved" in page
