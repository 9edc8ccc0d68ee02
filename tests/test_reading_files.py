"""A data logger's CSV file: read in the layouts loggers write, previewed, imported whole or not at all."""

import io
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sitekit import add_fridge, add_site
from testkit import QueryCounter, audit_rows, fresh, sign_in

from compounding.extensions import db
from compounding.models import Batch, Excursion, Lot, ReadingImport, TemperatureReading
from compounding.services import cold_chain, reading_files
from compounding.services.errors import NotFound
from compounding.services.reading_files import FileTooLarge, RowsRefused, parse

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def csv_file(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\n".join(lines) + "\n").encode(encoding)


def month_of_readings(start: datetime, *, count: int = 2976, celsius=lambda i: "4.5") -> bytes:
    """A logger read every 15 minutes: 31 days are 2,976 rows."""
    rows = [f"{(start + timedelta(minutes=15 * i)).isoformat()},{celsius(i)}" for i in range(count)]
    return csv_file("timestamp,temperature", *rows)


# --- Reading the file (no database) --------------------------------------------------------------------

def test_the_common_layout_is_read_with_its_offsets():
    parsed = parse(csv_file("timestamp,temperature", "2026-11-01T08:00:00+01:00,4.5", "2026-11-01T08:15:00Z,5"),
                   now=NOW)
    assert parsed.errors == [] and parsed.layout == "timestamp,temperature (comma-separated)"
    assert [(r.measured_at, r.offset_minutes, r.celsius, r.row, r.source) for r in parsed.rows] == [
        (datetime(2026, 11, 1, 7, tzinfo=UTC), 60, Decimal("4.50"), 2, "logger"),
        (datetime(2026, 11, 1, 8, 15, tzinfo=UTC), 0, Decimal("5.00"), 3, "logger")]
    assert parsed.first_at == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert parsed.last_at == datetime(2026, 11, 1, 8, 15, tzinfo=UTC)


def test_a_semicolon_file_with_decimal_commas_a_bom_and_excel_headers():
    data = "\ufeff" + "Date/Time;Temperature(°C);Min;Max\n2026-11-01T08:00:00+01:00;4,5;3,9;6,1\n"
    parsed = parse(data.encode("utf-8"), now=NOW)
    assert parsed.errors == []
    assert parsed.layout == "timestamp,temperature,min,max (semicolon-separated, decimal comma)"
    (row,) = parsed.rows
    assert (row.celsius, row.min_celsius, row.max_celsius) == (Decimal("4.50"), Decimal("3.90"), Decimal("6.10"))


def test_a_windows_export_with_lines_before_its_header_and_columns_not_read():
    data = csv_file("Logger: FRIDGE-LOG-7", "Serial;0042", "No.;Time;Temperature °C;Humidity",
                    "1;2026-11-01T08:00:00+01:00;4,5;40", encoding="cp1252")
    parsed = parse(data, now=NOW)
    assert parsed.errors == [] and parsed.rows[0].row == 4 and parsed.rows[0].celsius == Decimal("4.50")
    assert parsed.ignored_columns == ["No.", "Humidity"]


@pytest.mark.parametrize("header", ["datetime\ttemp", "Time\tcelsius", "DateTime\tTemperature °C",
                                    "date/time\tTemperature (°C)"])
def test_header_synonyms_in_a_tab_separated_file(header):
    parsed = parse(csv_file(header, "2026-11-01T08:00:00+01:00\t4.5"), now=NOW)
    assert parsed.errors == [] and len(parsed.rows) == 1 and parsed.layout.endswith("(tab-separated)")


def test_wrong_columns_name_the_header_expected_and_the_one_found():
    parsed = parse(csv_file("when,degrees F,probe", "2026-11-01T08:00:00Z,40,1"), now=NOW)
    assert parsed.rows == [] and len(parsed.errors) == 1
    message = parsed.errors[0].message
    assert '"timestamp,temperature"' in message and '"when,degrees F,probe"' in message


def test_an_empty_file_and_a_header_alone_are_refused():
    assert "empty" in parse(b"", now=NOW).errors[0].message
    assert "empty" in parse(b"\xef\xbb\xbf\n \n", now=NOW).errors[0].message
    assert "no readings" in parse(csv_file("timestamp,temperature"), now=NOW).errors[0].message


def test_fahrenheit_is_refused_rather_than_read_as_celsius():
    parsed = parse(csv_file("Time,Temperature (°F)", "2026-11-01T08:00:00Z,40"), now=NOW)
    assert "°F" in parsed.errors[0].message and parsed.rows == []


def test_a_time_without_an_offset_is_refused_with_its_row_unless_the_zone_is_given():
    data = csv_file("timestamp,temperature", "2026-11-01T08:00:00Z,4.5", "2026-11-01 10:00:00,4.6")
    refused = parse(data, now=NOW)
    assert [e.row for e in refused.errors] == [3] and "no UTC offset" in refused.errors[0].message
    local = parse(data, zone="Europe/Paris", now=NOW)
    assert local.errors == []
    assert local.rows[1].measured_at == datetime(2026, 11, 1, 9, tzinfo=UTC) and local.rows[1].offset_minutes == 60


def test_a_local_time_the_clocks_skipped_or_went_through_twice_is_refused():
    data = csv_file("timestamp,temperature", "2026-03-29 00:30:00,4", "2026-03-29 01:30:00,4",
                    "2026-03-29 02:30:00,4", "2026-10-25 01:30:00,4", "2026-10-25 02:30:00,4")
    parsed = parse(data, zone="Europe/London", now=NOW)
    assert [(e.row, "went forward" in e.message, "twice" in e.message) for e in parsed.errors] == [
        (3, True, False), (5, False, True)]
    assert [r.offset_minutes for r in parsed.rows] == [0, 60, 0]


def test_future_absurd_and_non_numeric_rows_are_refused_with_their_rows():
    data = csv_file("timestamp,temperature", "2026-11-01T08:00:00Z,4.5", "2027-01-01T08:00:00Z,4.5",
                    "2026-11-01T09:00:00Z,200", "2026-11-01T10:00:00Z,abc", "2026-11-01T11:00:00Z,\"4,5\"",
                    "01/11/2026 12:00,4")
    parsed = parse(data, now=NOW)
    found = {e.row: e.message for e in parsed.errors}
    assert sorted(found) == [3, 4, 5, 6, 7]
    assert "future" in found[3] and "plausible" in found[4] and "'abc'" in found[5]
    assert "decimal point" in found[6] and "ISO 8601" in found[7]


def test_a_moment_repeated_in_the_file_is_counted_once():
    parsed = parse(csv_file("timestamp,temperature", "2026-11-01T08:00:00+01:00,4.5", "2026-11-01T07:00:00Z,4.5"),
                   now=NOW)
    assert len(parsed.rows) == 1 and parsed.duplicates_in_file == 1


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes_are_read_or_refused_row_by_row_never_an_exception(data):
    parsed = parse(data, now=NOW)
    assert parsed.rows or parsed.errors


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=40), st.text(max_size=12)), max_size=20), st.sampled_from([",", ";", "\t"]),
       st.sampled_from([None, "Europe/London", "America/New_York"]))
def test_any_cells_under_a_good_header_are_read_or_refused_with_their_rows(cells, delimiter, zone):
    data = "\n".join([f"timestamp{delimiter}temperature", *(f"{a}{delimiter}{b}" for a, b in cells)]).encode()
    parsed = parse(data, zone=zone, now=NOW)
    assert all(e.row >= 1 and e.message for e in parsed.errors)
    assert len(parsed.rows) + parsed.duplicates_in_file <= max(len(cells), 0)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_moment_at_the_calendars_edge_is_a_row_error(moment):
    parsed = parse(csv_file("timestamp,temperature", f"{moment},4"), now=NOW)
    assert [e.row for e in parsed.errors] == [2]


def test_parse_moment_refuses_a_moment_at_the_calendars_edge():
    with pytest.raises(cold_chain.InvalidInput):
        cold_chain.parse_moment("0001-01-01T00:00:00+01:00")


# --- Importing -------------------------------------------------------------------------------------------

def month_start() -> datetime:
    return (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)


def readings_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(TemperatureReading))


def test_a_logger_month_is_imported_once_quickly_then_found_all_duplicate(fridge, technician):
    data = month_of_readings(month_start())
    started = time.perf_counter()
    with QueryCounter(db.engine) as counter:
        record = reading_files.import_file(technician, fridge.id, data, "november.csv")
    seconds = time.perf_counter() - started
    # The readings' INSERTs are batched where the driver returns ids in order (PostgreSQL), one a row
    # on SQLite; everything else is a fixed handful of statements whatever the file's length.
    others = [s for s in counter.statements if not s.startswith("INSERT INTO temperature_readings")]
    print(f"\n2,976 rows imported in {seconds:.2f} s, {counter.count} statements ({len(others)} besides the "
          "readings' INSERTs)")
    # The brief's budget is for SQLite; a PostgreSQL server shared with other work gets more room.
    budget = 2 if db.engine.dialect.name == "sqlite" else 5
    assert seconds < budget and len(others) < 30
    assert (record.rows, record.imported, record.duplicates) == (2976, 2976, 0)
    assert readings_count() == 2976 and audit_rows("readings.imported")
    again = reading_files.import_file(technician, fridge.id, data, "november.csv")
    assert (again.rows, again.imported, again.duplicates) == (2976, 0, 2976)
    assert readings_count() == 2976
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReadingImport)) == 2


def test_a_bad_row_in_the_middle_imports_nothing_and_names_its_row(fridge, technician):
    start = month_start()
    lines = [f"{(start + timedelta(minutes=15 * i)).isoformat()},{'4.5' if i != 500 else 'n/a'}" for i in range(1000)]
    with pytest.raises(RowsRefused, match="row 502") as refused:
        reading_files.import_file(technician, fridge.id, csv_file("timestamp,temperature", *lines), "bad.csv")
    assert [e.row for e in refused.value.errors] == [502]
    assert readings_count() == 0 and db.session.scalar(sa.select(sa.func.count()).select_from(ReadingImport)) == 0


def test_a_refusal_names_twenty_rows_and_counts_the_rest(fridge, technician):
    lines = [f"2026-11-01T{h:02d}:{m:02d}:00,4" for h in range(3) for m in range(0, 60, 5)]
    with pytest.raises(RowsRefused) as refused:
        reading_files.import_file(technician, fridge.id, csv_file("timestamp,temperature", *lines), "local.csv")
    assert "36 rows have errors" in refused.value.message and "(and 16 more)" in refused.value.message
    assert len(refused.value.details["errors"]) == 36


def test_an_excursion_in_the_file_is_found_late_and_holds_the_fridges_stock(stocked, fridge, technician):
    start = datetime.now(UTC) - timedelta(days=2)
    data = month_of_readings(start, count=96, celsius=lambda i: "11.5" if 40 <= i < 44 else "5")
    record = reading_files.import_file(technician, fridge.id, data, "warm.csv")
    (excursion,) = reading_files.import_excursions(record.id)
    # At the latest it began after the last reading in range, 15 minutes before the first one out.
    assert excursion.found_late and excursion.started_at == start + timedelta(minutes=585)
    assert excursion.ended_at == start + timedelta(minutes=660) and excursion.high_celsius == Decimal("11.5")
    assert fresh(Batch, stocked["batch"].id).status == "on_hold" and fresh(Lot, stocked["lot"].id).status == "on_hold"


def test_a_file_over_the_limit_is_refused(app, fridge, technician):
    app.config["READINGS_FILE_MAX_BYTES"] = 1000
    with pytest.raises(FileTooLarge, match="larger than"):
        reading_files.import_file(technician, fridge.id, month_of_readings(month_start(), count=100), "big.csv")


def test_the_stored_filename_is_the_uploads_own_name_without_path_or_control_characters(fridge, technician):
    record = reading_files.import_file(technician, fridge.id, month_of_readings(month_start(), count=2),
                                       "C:\\fakepath\\fri\x00dge\ud800.csv")
    assert record.filename == "fridge.csv"


def test_another_sites_fridge_is_not_found(fridge, make_user):
    add_site("LYON")
    lyon_technician = make_user("technician", site_codes=["LYON"])
    with pytest.raises(NotFound):
        reading_files.import_file(lyon_technician, fridge.id, month_of_readings(month_start(), count=4), "x.csv")


# --- The API -----------------------------------------------------------------------------------------------

def upload(client, location_id, data, headers, **form):
    return client.post(f"/api/v1/locations/{location_id}/readings/import", headers=headers,
                       data={"file": (io.BytesIO(data), "logger.csv"), **form}, content_type="multipart/form-data")


def test_the_api_imports_a_file_and_names_the_excursions_it_opened(client, stocked, fridge, auth):
    start = datetime.now(UTC) - timedelta(days=1)
    data = month_of_readings(start, count=20, celsius=lambda i: "9" if i == 5 else "4")
    answer = upload(client, fridge.id, data, auth("technician"))
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    excursion = db.session.scalar(sa.select(Excursion))
    assert body["rows"] == 20 and body["imported"] == 20 and body["duplicates"] == 0
    assert body["excursions"] == [{"id": excursion.id, "code": excursion.code, "found_late": True,
                                   "state": "awaiting_decision", "started_at": excursion.started_at.isoformat(),
                                   "ended_at": excursion.ended_at.isoformat()}]
    assert upload(client, fridge.id, data, auth("technician")).get_json()["duplicates"] == 20


def test_the_api_reads_local_times_in_the_zone_it_is_given(client, fridge, auth):
    data = csv_file("timestamp,temperature", "2026-07-01 08:00:00,4.5")
    refused = upload(client, fridge.id, data, auth("technician"))
    assert refused.status_code == 422 and refused.get_json()["errors"][0]["row"] == 2
    answer = upload(client, fridge.id, data, auth("technician"), timezone="Europe/Paris")
    assert answer.status_code == 201 and answer.get_json()["first_at"].startswith("2026-07-01T06:00:00")
    assert upload(client, fridge.id, data, auth("technician"), timezone="Mars/Olympus").status_code == 422


def test_the_api_refuses_wrong_columns_with_the_rows_and_keeps_its_statuses(client, fridge, auth):
    answer = upload(client, fridge.id, csv_file("a,b", "1,2"), auth("technician"))
    assert answer.status_code == 422 and answer.get_json()["errors"][0]["row"] == 1
    assert "timestamp,temperature" in answer.get_json()["errors"][0]["message"]
    assert upload(client, 999999, csv_file("a,b"), auth("technician")).status_code == 404
    assert upload(client, fridge.id, csv_file("a,b"), auth("practitioner")).status_code == 403
    missing = client.post(f"/api/v1/locations/{fridge.id}/readings/import", headers=auth("technician"),
                          data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "file" in missing.get_json()["error"]


def test_the_api_answers_413_over_the_limit_and_over_the_request_limit(app, client, fridge, auth):
    app.config["READINGS_FILE_MAX_BYTES"] = 1000
    data = month_of_readings(month_start(), count=100)
    answer = upload(client, fridge.id, data, auth("technician"))
    assert answer.status_code == 413 and "larger than" in answer.get_json()["error"]
    app.config["MAX_CONTENT_LENGTH"] = 2000
    answer = upload(client, fridge.id, data, auth("technician"))
    assert answer.status_code == 413 and answer.get_json()["error"]
    assert readings_count() == 0


def test_the_openapi_document_shows_a_multipart_body_and_the_413(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/locations/{location_id}/readings/import"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"201", "403", "404", "409", "413", "422"} <= set(operation["responses"])
    assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ReadingFileError")


# --- The page ------------------------------------------------------------------------------------------------

def test_the_page_previews_then_imports_exactly_the_previewed_file(app, client, stocked, fridge, technician):
    sign_in(client, technician)
    page = client.get(f"/cold-chain/locations/{fridge.id}/import")
    assert page.status_code == 200 and "Europe/London" in page.get_data(as_text=True)
    start = datetime.now(UTC) - timedelta(days=1)
    data = csv_file("Date/Time;Temperature (°C)", *(f"{(start + timedelta(minutes=15 * i)).isoformat()};"
                                                    f"{'12' if i == 7 else '4,5'}" for i in range(30)))
    preview = client.post(f"/cold-chain/locations/{fridge.id}/import",
                          data={"file": (io.BytesIO(data), "logger.csv")}, content_type="multipart/form-data")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html
    assert "semicolon-separated, decimal comma" in html and re.search(r'id="row-count">30<', html)
    assert re.search(r'id="out-of-range">1 ', html) and readings_count() == 0
    digest = re.search(r'name="sha256" type="hidden" value="([0-9a-f]{64})"', html).group(1)
    # Previewed for this fridge and read without a zone: confirmed elsewhere or in a zone, it is not found.
    other = add_fridge(fridge.site_id, "FRIDGE2")
    elsewhere = client.post(f"/cold-chain/locations/{other.id}/import/confirm",
                            data={"sha256": digest, "filename": "logger.csv", "timezone": ""})
    zoned = client.post(f"/cold-chain/locations/{fridge.id}/import/confirm",
                        data={"sha256": digest, "filename": "logger.csv", "timezone": "Asia/Tokyo"})
    assert elsewhere.status_code == zoned.status_code == 422 and readings_count() == 0
    done = client.post(f"/cold-chain/locations/{fridge.id}/import/confirm",
                       data={"sha256": digest, "filename": "logger.csv", "timezone": ""}, follow_redirects=True)
    text = done.get_data(as_text=True)
    assert done.status_code == 200 and "30 readings imported" in text and readings_count() == 30
    assert re.search(r"E0000\d\d", text) and "found late" in text
    assert fresh(Lot, stocked["lot"].id).status == "on_hold"
    again = client.post(f"/cold-chain/locations/{fridge.id}/import/confirm",
                        data={"sha256": digest, "filename": "logger.csv"})
    assert again.status_code == 422 and "no longer here" in again.get_data(as_text=True)


def test_the_page_lists_every_bad_row_and_offers_no_import(client, fridge, technician):
    sign_in(client, technician)
    data = csv_file("timestamp,temperature", "2026-11-01T08:00:00Z,4", "2026-11-01T08:15:00,4", "2026-11-01T08:30Z,x")
    preview = client.post(f"/cold-chain/locations/{fridge.id}/import",
                          data={"file": (io.BytesIO(data), "logger.csv")}, content_type="multipart/form-data")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 422 and "Row 3:" in html and "Row 4:" in html and 'name="sha256"' not in html


def test_the_page_reads_local_times_when_asked(client, fridge, technician):
    sign_in(client, technician)
    data = csv_file("timestamp,temperature", "2026-07-01 08:00:00,4")
    preview = client.post(f"/cold-chain/locations/{fridge.id}/import",
                          data={"file": (io.BytesIO(data), "logger.csv"), "local_times": "y",
                                "timezone": "Europe/London"}, content_type="multipart/form-data")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "2026-07-01 08:00:00 BST" in html


def test_the_page_says_when_a_file_is_over_the_limit(app, client, fridge, technician):
    app.config["READINGS_FILE_MAX_BYTES"] = 1000
    sign_in(client, technician)
    preview = client.post(f"/cold-chain/locations/{fridge.id}/import",
                          data={"file": (io.BytesIO(month_of_readings(month_start(), count=100)), "big.csv")},
                          content_type="multipart/form-data")
    assert preview.status_code == 413 and "larger than 1,000 bytes" in preview.get_data(as_text=True)
    app.config["MAX_CONTENT_LENGTH"] = 2000
    over = client.post(f"/cold-chain/locations/{fridge.id}/import",
                       data={"file": (io.BytesIO(month_of_readings(month_start(), count=100)), "big.csv")},
                       content_type="multipart/form-data")
    assert over.status_code == 413 and "too large" in over.get_data(as_text=True)


def test_one_moment_twice_with_two_temperatures_is_a_row_error():
    parsed = parse(csv_file("timestamp,temperature", "2026-11-01T08:00:00Z,4.5", "2026-11-01T08:00:00Z,15",
                            "2026-11-01T08:15:00Z,5", "2026-11-01T08:15:00Z,5"), now=NOW)
    assert [(e.row, e.message) for e in parsed.errors] == [(3, "The same moment as row 2 with another temperature.")]
    assert parsed.duplicates_in_file == 1
