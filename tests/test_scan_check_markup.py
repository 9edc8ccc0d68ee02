"""The treatment-room check needs its hooks on the page: the scan API address and the script."""


def test_the_session_form_carries_the_scan_hooks_for_the_on_the_spot_check(client, as_role, make_patient):
    patient = make_patient()
    as_role("practitioner")
    page = client.get(f"/treatments/patients/{patient.id}/sessions/new").get_data(as_text=True)
    assert 'data-scan-api="/api/v1/scan"' in page
    assert "/static/js/scan-check.js" in page
    assert 'class="form-control form-control-sm code batch-scan' in page
