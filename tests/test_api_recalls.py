"""API: trace a lot or batch, open and work a recall, quality signals."""

from datetime import datetime

import pytest
import sqlalchemy as sa
from testkit import PASSWORD, QueryCounter, bearer, lot_used_by_sessions

from compounding.extensions import db
from compounding.models import Batch, Lot, Recall, RecallContact, Signature
from compounding.services import recalls, treatments


def use(batch, volume):
    return {"batch_code": batch.code, "volume_ml": volume}


@pytest.fixture
def token_for(make_user, make_token):
    def make(role: str) -> dict:
        return bearer(make_token(make_user(role)))

    return make


def has_offset(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None


def test_a_lot_traces_to_exactly_its_three_patients_with_their_volumes(client, chain, token_for):
    response = client.get(f"/api/v1/trace/lots/{chain['lot'].id}", headers=token_for("practitioner"))
    assert response.status_code == 200
    body = response.json
    assert {"lot", "batches", "sessions", "patients", "counts", "total_volume_ml"} <= set(body)
    assert body["lot"]["code"] == chain["lot"].code and body["lot"]["ingredient_name"] == "Phosphatidylcholine"
    assert {p["chart_number"]: p["volume_ml"] for p in body["patients"]} == {
        chain["a"].chart_number: "3", chain["b"].chart_number: "3", chain["c"].chart_number: "5"}
    assert all(p["phone"] and p["email"] for p in body["patients"])
    assert body["counts"] == {"batches": 2, "vials": 4, "sessions": 4, "patients": 3}
    assert body["total_volume_ml"] == "11"
    assert {b["code"]: b["quantity_from_lot"] for b in body["batches"]} == {
        chain["first"].code: "4", chain["second"].code: "4"}
    mixed = next(s for s in body["sessions"] if s["patient_id"] == chain["b"].id)
    assert mixed["batch_codes"] == sorted([chain["first"].code, chain["second"].code]) and mixed["volume_ml"] == "3"
    assert all(has_offset(s["performed_at"]) for s in body["sessions"])


def test_a_batch_traces_up_to_its_lots_and_down_to_its_patients(client, chain, token_for):
    body = client.get(f"/api/v1/trace/batches/{chain['second'].id}", headers=token_for("auditor")).json
    assert body["batch"]["code"] == chain["second"].code and has_offset(body["batch"]["beyond_use_at"])
    assert {lot["code"]: lot["quantity"] for lot in body["lots"]}[chain["lot"].code] == "4"
    assert body["counts"] == {"lots": 2, "batches": 1, "vials": 2, "sessions": 3, "patients": 2}
    assert {p["id"]: p["volume_ml"] for p in body["patients"]} == {chain["b"].id: "2", chain["c"].id: "5"}


def test_tracing_an_unknown_lot_or_batch_answers_404_json(client, token_for):
    headers = token_for("pharmacist")
    for url in ("/api/v1/trace/lots/999", "/api/v1/trace/batches/999", "/api/v1/recalls/999"):
        response = client.get(url, headers=headers)
        assert response.status_code == 404 and set(response.json) == {"error", "details"}, url


def test_a_recall_needs_the_right_password_then_answers_its_scope_and_blocks_both_batches(
        client, chain, make_user, make_token):
    opener = make_user("pharmacist", display_name="Dr Omar Haddad")
    headers = bearer(make_token(opener))
    lot = chain["lot"]
    refused = client.post("/api/v1/recalls", json={"lot_id": lot.id, "reason": "Supplier alert",
                                                   "password": "wrong-password"}, headers=headers)
    assert refused.status_code == 403 and "password" in refused.json["details"]
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Recall.id))) == 0
    assert db.session.scalar(sa.select(sa.func.count(Signature.id)).where(Signature.entity_type == "recall")) == 0
    assert {db.session.get(Batch, b.id).status for b in (chain["first"], chain["second"])} == {"released"}

    both = client.post("/api/v1/recalls", json={"lot_id": lot.id, "batch_id": chain["first"].id, "reason": "x",
                                                "password": PASSWORD}, headers=headers)
    assert both.status_code == 422 and "lot_id" in both.json["details"]
    no_reason = client.post("/api/v1/recalls", json={"lot_id": lot.id, "password": PASSWORD}, headers=headers)
    assert no_reason.status_code == 422 and "reason" in no_reason.json["details"]

    response = client.post("/api/v1/recalls", json={"lot_id": lot.id, "reason": "Supplier alert: endotoxin",
                                                    "password": PASSWORD}, headers=headers)
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "open" and body["target"] == {"kind": "lot", "id": lot.id, "code": lot.code}
    assert body["reason"] == "Supplier alert: endotoxin" and has_offset(body["opened_at"])
    assert body["opened_by"] == "Dr Omar Haddad" and body["opened_by_id"] == opener.id
    assert [s["meaning"] for s in body["signatures"]] == ["recall opened"]
    assert len(body["batches"]) == 2 and len(body["sessions"]) == 4
    assert {p["id"] for p in body["patients"]} == {chain["a"].id, chain["b"].id, chain["c"].id}
    assert body["progress"] == {"contacted": 0, "total": 3}
    db.session.expire_all()
    assert db.session.get(Lot, lot.id).status == "recalled"
    assert {db.session.get(Batch, b.id).status for b in (chain["first"], chain["second"])} == {"recalled"}
    again = client.post("/api/v1/recalls", json={"lot_id": lot.id, "reason": "again", "password": PASSWORD},
                        headers=headers)
    assert again.status_code == 409 and again.json["details"]["recall_id"] == body["id"]


def test_outcomes_move_the_progress_and_closing_needs_every_outcome_and_a_signature(client, chain, token_for):
    recall = recalls.open_recall(chain["pharmacist"], lot_id=chain["lot"].id, reason="Supplier alert",
                                 password=PASSWORD)
    staff = token_for("technician")
    url = f"/api/v1/recalls/{recall.id}"
    ticked = client.post(f"{url}/contacts", json={"patient_id": chain["a"].id, "method": "phone",
                                                  "note": "left a voicemail"}, headers=staff)
    assert ticked.status_code == 201
    assert ticked.json["progress"] == {"contacted": 1, "total": 3} and ticked.json["outcome"] == "reached"
    assert ticked.json["method"] == "phone" and ticked.json["note"] == "left a voicemail"
    assert ticked.json["chart_number"] == chain["a"].chart_number and has_offset(ticked.json["contacted_at"])
    # A history of attempts: a second row for the same patient is kept; the latest final outcome counts.
    again = client.post(f"{url}/contacts", json={"patient_id": chain["a"].id, "method": "email"}, headers=staff)
    assert again.status_code == 201 and again.json["progress"] == {"contacted": 1, "total": 3}
    stranger = client.post(f"{url}/contacts", json={"patient_id": chain["other"].id, "method": "phone"},
                           headers=staff)
    assert stranger.status_code == 422 and "patient_id" in stranger.json["details"]
    assert client.post(f"{url}/contacts", json={"patient_id": chain["b"].id, "method": "pigeon"},
                       headers=staff).status_code == 422
    body = client.get(url, headers=staff).json
    assert body["progress"] == {"contacted": 1, "total": 3}
    assert {p["id"]: p["contacted"] for p in body["patients"]} == {
        chain["a"].id: True, chain["b"].id: False, chain["c"].id: False}
    assert [c["patient_id"] for c in body["contacts"]] == [chain["a"].id] * 2
    a_row = next(p for p in body["patients"] if p["id"] == chain["a"].id)
    assert a_row["outcome"] == "reached" and [c["method"] for c in a_row["attempts"]] == ["phone", "email"]

    pharmacist = token_for("pharmacist")
    no_outcome = client.post(f"{url}/close", json={"password": PASSWORD}, headers=pharmacist)
    assert no_outcome.status_code == 422 and "outcome" in no_outcome.json["details"]
    waiting = client.post(f"{url}/close", json={"outcome": "Reviewed", "password": PASSWORD}, headers=pharmacist)
    assert waiting.status_code == 409 and "2 patients" in waiting.json["error"]
    assert waiting.json["details"]["patients_without_outcome"] == 2
    assert client.post(f"{url}/contacts", json={"patient_id": chain["b"].id, "outcome": "declined"},
                       headers=staff).status_code == 201
    for _ in range(2):
        assert client.post(f"{url}/contacts", json={"patient_id": chain["c"].id, "outcome": "attempt_failed",
                                                    "method": "phone"}, headers=staff).status_code == 201
    assert client.post(f"{url}/contacts", json={"patient_id": chain["c"].id, "outcome": "unreachable",
                                                "note": "no answer twice"}, headers=staff).status_code == 201
    wrong = client.post(f"{url}/close", json={"outcome": "Reviewed", "password": "not-it-at-all"},
                        headers=pharmacist)
    assert wrong.status_code == 403
    assert db.session.get(Recall, recall.id).status == "open"
    closed = client.post(f"{url}/close", json={"outcome": "All reviewed; no infection.", "password": PASSWORD},
                         headers=pharmacist)
    assert closed.status_code == 200 and closed.json["status"] == "closed"
    assert closed.json["outcome"] == "All reviewed; no infection." and has_offset(closed.json["closed_at"])
    assert [s["meaning"] for s in closed.json["signatures"]] == ["recall opened", "recall closed"]
    late = client.post(f"{url}/contacts", json={"patient_id": chain["b"].id, "method": "phone"}, headers=staff)
    assert late.status_code == 409


@pytest.mark.parametrize("role", ["technician", "practitioner"])
def test_technicians_and_practitioners_tick_contacts_but_cannot_open_or_close(client, chain, token_for, role):
    recall = recalls.open_recall(chain["pharmacist"], batch_id=chain["first"].id, reason="Cloudy vial",
                                 password=PASSWORD)
    headers = token_for(role)
    assert client.post("/api/v1/recalls", json={"batch_id": chain["second"].id, "reason": "x",
                                                "password": PASSWORD}, headers=headers).status_code == 403
    assert client.post(f"/api/v1/recalls/{recall.id}/close", json={"outcome": "x", "password": PASSWORD},
                       headers=headers).status_code == 403
    assert client.post(f"/api/v1/recalls/{recall.id}/contacts", json={"patient_id": chain["b"].id,
                                                                      "method": "in_person"},
                       headers=headers).status_code == 201
    assert db.session.scalar(sa.select(sa.func.count(Recall.id))) == 1


def test_an_auditor_reads_everything_and_every_post_is_forbidden(client, chain, token_for):
    recall = recalls.open_recall(chain["pharmacist"], lot_id=chain["lot"].id, reason="Supplier alert",
                                 password=PASSWORD)
    headers = token_for("auditor")
    for url in ("/api/v1/recalls", f"/api/v1/recalls/{recall.id}", "/api/v1/quality-signals",
                f"/api/v1/trace/lots/{chain['lot'].id}", f"/api/v1/trace/batches/{chain['first'].id}"):
        assert client.get(url, headers=headers).status_code == 200, url
    for url, body in (("/api/v1/recalls", {"batch_id": chain["first"].id, "reason": "x", "password": PASSWORD}),
                      (f"/api/v1/recalls/{recall.id}/contacts", {"patient_id": chain["a"].id, "method": "phone"}),
                      (f"/api/v1/recalls/{recall.id}/close", {"outcome": "x", "password": PASSWORD})):
        assert client.post(url, json=body, headers=headers).status_code == 403, url
    assert db.session.scalar(sa.select(sa.func.count(RecallContact.id))) == 0


def test_the_recall_list_answers_open_recalls_first_with_their_progress(client, chain, token_for):
    earlier = recalls.open_recall(chain["pharmacist"], batch_id=chain["first"].id, reason="Cloudy vial",
                                  password=PASSWORD)
    recalls.record_contact(chain["practitioner"], earlier.id, chain["a"].id, "phone")
    recalls.record_contact(chain["practitioner"], earlier.id, chain["b"].id, None, outcome="declined")
    recalls.close_recall(chain["pharmacist"], earlier.id, "Reviewed", PASSWORD)
    later = recalls.open_recall(chain["pharmacist"], batch_id=chain["second"].id, reason="Supplier alert",
                                password=PASSWORD)
    headers = token_for("practitioner")
    body = client.get("/api/v1/recalls", headers=headers).json
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 2)
    assert [r["id"] for r in body["items"]] == [later.id, earlier.id]
    assert body["items"][1]["progress"] == {"contacted": 2, "total": 2}
    assert body["items"][0]["target"] == {"kind": "batch", "id": chain["second"].id, "code": chain["second"].code}
    closed = client.get("/api/v1/recalls?status=closed&per_page=1", headers=headers).json
    assert [r["id"] for r in closed["items"]] == [earlier.id] and closed["per_page"] == 1
    assert client.get("/api/v1/recalls?status=maybe", headers=headers).status_code == 422


def test_quality_signals_list_the_flagged_batch_and_lots_with_any_open_recall(client, chain, token_for):
    headers = token_for("pharmacist")
    assert client.get("/api/v1/quality-signals", headers=headers).json["items"] == []
    treatments.record_adverse_event(chain["practitioner"], session_id=chain["sessions"][0].id, type="infection",
                                    severity="moderate")
    body = client.get("/api/v1/quality-signals", headers=headers).json
    flagged = {(s["kind"], s["code"]): s for s in body["items"]}
    batch_signal = flagged[("batch", chain["first"].code)]
    assert (batch_signal["events"], batch_signal["severe"], batch_signal["sessions"]) == (1, 1, 2)
    assert batch_signal["rate"] == "0.5000" and batch_signal["open_recall_id"] is None
    assert ("lot", chain["lot"].code) in flagged and body["total"] == len(body["items"])
    recall = recalls.open_recall(chain["pharmacist"], batch_id=chain["first"].id, reason="Infection",
                                 password=PASSWORD)
    again = client.get("/api/v1/quality-signals", headers=headers).json
    assert {(s["kind"], s["code"]): s["open_recall_id"] for s in again["items"]}[("batch", chain["first"].code)] \
        == recall.id


def test_the_openapi_document_describes_the_recall_and_trace_routes(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path, method in (("/api/v1/recalls", "post"), ("/api/v1/recalls", "get"),
                         ("/api/v1/recalls/{recall_id}", "get"), ("/api/v1/recalls/{recall_id}/contacts", "post"),
                         ("/api/v1/recalls/{recall_id}/close", "post"), ("/api/v1/trace/lots/{lot_id}", "get"),
                         ("/api/v1/trace/batches/{batch_id}", "get"), ("/api/v1/quality-signals", "get")):
        assert method in paths[path], (path, method)


def test_tracing_a_lot_costs_the_same_statements_for_10_or_120_sessions(
        client, make_batch, make_patient, practitioner, token_for):
    small = lot_used_by_sessions(make_batch, make_patient, practitioner, 10)
    large = lot_used_by_sessions(make_batch, make_patient, practitioner, 120)
    headers = token_for("pharmacist")
    client.get(f"/api/v1/trace/lots/{small}", headers=headers)  # warm-up
    counted, answers = {}, {}
    for lot_id in (small, large):
        with QueryCounter(db.engine) as counter:
            answers[lot_id] = client.get(f"/api/v1/trace/lots/{lot_id}", headers=headers).json
        counted[lot_id] = counter.count
    assert counted[small] == counted[large]
    counts = answers[large]["counts"]
    assert counts == {"batches": 1, "vials": counts["vials"], "sessions": 120, "patients": 120}
    assert counts["vials"] >= 20
    assert (len(answers[large]["patients"]), len(answers[large]["sessions"])) == (100, 100)
    assert (answers[large]["page"], answers[large]["per_page"], answers[large]["pages"]) == (1, 100, 2)
    with QueryCounter(db.engine) as counter:
        second = client.get(f"/api/v1/trace/lots/{large}?page=2", headers=headers).json
    assert counter.count == counted[large]
    assert (len(second["patients"]), len(second["sessions"]), second["batches"]) == (20, 20, [])
    assert second["counts"] == answers[large]["counts"] and second["total_volume_ml"] == "120"
    everyone = [p["id"] for answer in (answers[large], second) for p in answer["patients"]]
    assert len(set(everyone)) == 120
    charts = [p["chart_number"] for answer in (answers[large], second) for p in answer["patients"]]
    assert charts == sorted(charts)
    assert answers[large]["total_volume_ml"] == "120" and answers[small]["total_volume_ml"] == "10"


@pytest.mark.parametrize("query", ["per_page=0", "per_page=501", "page=0", "page=x"])
def test_a_trace_page_out_of_range_is_refused_with_a_message(client, make_batch, token_for, query):
    batch = make_batch()
    response = client.get(f"/api/v1/trace/batches/{batch.id}?{query}", headers=token_for("pharmacist"))
    assert response.status_code == 422 and response.json["error"]


def test_a_recall_answers_its_scope_a_page_at_a_time_and_ticks_a_patient_of_any_page(
        client, make_batch, make_patient, practitioner, token_for):
    lot_id = lot_used_by_sessions(make_batch, make_patient, practitioner, 12)
    headers = token_for("pharmacist")
    opened = client.post("/api/v1/recalls", headers=headers,
                         json={"lot_id": lot_id, "reason": "Supplier alert", "password": PASSWORD})
    assert opened.status_code == 201 and opened.json["counts"]["patients"] == 12
    recall_id = opened.json["id"]
    last = client.get(f"/api/v1/recalls/{recall_id}?page=3&per_page=5", headers=headers).json
    # The batch has 20 vials: 4 pages of 5.
    assert (last["page"], last["per_page"], last["pages"], len(last["patients"])) == (3, 5, 4, 2)
    patient_id = last["patients"][-1]["id"]
    ticked = client.post(f"/api/v1/recalls/{recall_id}/contacts", headers=headers,
                         json={"patient_id": patient_id, "method": "phone"})
    assert ticked.status_code == 201 and ticked.json["progress"] == {"contacted": 1, "total": 12}
    assert ticked.json["patient_id"] == patient_id and ticked.json["chart_number"]
    again = client.get(f"/api/v1/recalls/{recall_id}?page=3&per_page=5", headers=headers).json
    assert [c["patient_id"] for c in again["contacts"]] == [patient_id]
    assert next(p for p in again["patients"] if p["id"] == patient_id)["contacted"] is True
    assert client.get(f"/api/v1/recalls/{recall_id}?per_page=5", headers=headers).json["contacts"] == []
