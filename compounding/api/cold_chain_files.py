"""API: a data logger's CSV file imported into a location's readings, whole or not at all."""

from flask import abort, request
from flask_login import current_user

from ..services import reading_files
from .schemas.cold_chain_files import ReadingFileErrorSchema, ReadingFileUploadSchema, ReadingImportSchema
from .views import answer, route, shared


def dump_import(record) -> dict:
    excursions = reading_files.import_excursions(record.id)
    return shared(ReadingImportSchema).dump({
        "id": record.id, "location_id": record.location_id, "filename": record.filename, "sha256": record.sha256,
        "rows": record.rows, "imported": record.imported, "duplicates": record.duplicates,
        "first_at": record.first_at, "last_at": record.last_at,
        "excursions": [{"id": e.id, "code": e.code, "started_at": e.started_at, "ended_at": e.ended_at,
                        "found_late": e.found_late, "state": e.state} for e in excursions]})


def _refused(message: str, errors: list[dict], status: int = 422):
    abort(answer(shared(ReadingFileErrorSchema).dump({"error": message, "details": None, "errors": errors}),
                 status))


@route("/locations/<int:location_id>/readings/import", "POST", permission="readings.import",
       summary="Import a data logger's CSV file into a location's readings, whole or not at all: repeats are "
               "skipped and counted, out-of-range readings open excursions (found late) that hold the stock; "
               "413 over the size limit, 422 with every row at fault",
       body=ReadingFileUploadSchema, body_type="multipart/form-data", response=ReadingImportSchema, status=201,
       errors=(403, 404, 409, 413, 422), error_schemas={422: ReadingFileErrorSchema})
def location_readings_import(location_id: int):
    upload = request.files.get("file")
    if upload is None:
        _refused("Send the logger's CSV file as the multipart field `file`.", [])
    data = upload.read(reading_files.max_bytes() + 1)
    try:
        record = reading_files.import_file(current_user, location_id, data, upload.filename or "readings.csv",
                                           zone=request.form.get("timezone"))
    except reading_files.RowsRefused as exc:
        _refused(exc.message, [{"row": e.row, "message": e.message} for e in exc.errors])
    return answer(dump_import(record), 201)
