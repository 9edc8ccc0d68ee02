"""API: documents attached to lots, batches, test results, equipment and qualifications; their bytes; withdrawal.

An upload is a multipart body (`file`, `kind?`, `note?`): 201 with the document, 422 for a file that
is not what it claims (or empty, or a name with a folder), 413 over DOCUMENT_MAX_BYTES, 503 when
the file store does not answer (nothing is attached then). Reads follow the record: its site
(404 outside the caller's) and its read permission (403).
"""

from flask import request, url_for
from flask_login import current_user

from ..documents import files
from ..pagination import paginate_rows
from ..queries.documents import DocumentRow, document_row, documents_query, ensure_record_visible
from ..services import documents, sites
from ..services.errors import NotFound
from .schemas.documents import DocumentSchema, DocumentUploadSchema, DocumentWithdrawSchema
from .views import answer, json_body, load, page_answer, route, shared

# (entity type, the record's path and the name of its id in it, the upload's permission, the list's permission)
RECORDS = (
    ("lot", "/lots/<int:lot_id>", "lot_id", documents.UPLOAD_PERMISSION["lot"], documents.READ_PERMISSION["lot"]),
    ("batch", "/batches/<int:batch_id>", "batch_id", documents.UPLOAD_PERMISSION["batch"],
     documents.READ_PERMISSION["batch"]),
    ("equipment", "/equipment/<int:equipment_id>", "equipment_id", documents.UPLOAD_PERMISSION["equipment"],
     documents.READ_PERMISSION["equipment"]),
    # Everyone reads their own qualifications' evidence: the service judges who else may.
    ("qualification", "/qualifications/<int:qualification_id>", "qualification_id",
     documents.UPLOAD_PERMISSION["qualification"], "signed_in"),
    ("batch_test", "/batches/<int:batch_id>/tests/<int:test_id>", "test_id",
     documents.UPLOAD_PERMISSION["batch_test"], documents.READ_PERMISSION["batch_test"]),
)


def dump(row: DocumentRow) -> dict:
    document = row.document
    return shared(DocumentSchema).dump({
        "id": document.id, "entity_type": document.entity_type, "entity_id": document.entity_id,
        "kind": document.kind, "filename": document.filename, "content_type": document.content_type,
        "size": document.size, "sha256": document.sha256, "received_sha256": document.received_sha256,
        "note": document.note, "uploaded_at": document.uploaded_at, "uploaded_by": row.uploaded_by,
        "withdrawn": document.withdrawn_at is not None, "withdrawn_at": document.withdrawn_at,
        "withdrawn_by": row.withdrawn_by if document.withdrawn_at is not None else None,
        "withdraw_reason": document.withdraw_reason,
        "download_url": url_for("api.document_content", document_id=document.id)})


def _record(entity_type: str, entity_id: int, batch_id: int | None = None):
    """The record, 404 when there is none, it is not the batch's test result, or it is outside the caller's sites."""
    item = documents.owner(entity_type, entity_id)
    if entity_type == "batch_test" and item.batch_id != batch_id:
        raise NotFound("There is no such test result.")
    ensure_record_visible(entity_type, entity_id, sites.visible_site_ids(current_user),
                          documents.ENTITY_TEXT[entity_type])
    return item


def _visible_document(document_id: int):
    document = documents.get_document(document_id)
    ensure_record_visible(document.entity_type, document.entity_id, sites.visible_site_ids(current_user))
    return document


def _register(entity_type: str, path: str, id_name: str, upload_permission: str, read_permission: str) -> None:
    what = documents.ENTITY_TEXT[entity_type]

    def upload(**ids):
        entity_id = ids[id_name]
        _record(entity_type, entity_id, ids.get("batch_id"))
        data, filename = files.uploaded("file")
        document = documents.attach(current_user, entity_type, entity_id, data=data, filename=filename,
                                    kind=request.form.get("kind") or None, note=request.form.get("note", ""))
        return answer(dump(document_row(document.id)), 201)

    def listing(**ids):
        entity_id = ids[id_name]
        documents.ensure_may_read(current_user, entity_type, _record(entity_type, entity_id, ids.get("batch_id")))
        pagination = paginate_rows(documents_query(entity_type, [entity_id]))
        return answer(page_answer([dump(DocumentRow(*row)) for row in pagination.items], pagination))

    upload.__name__, listing.__name__ = f"{entity_type}_document_upload", f"{entity_type}_document_list"
    view = route(f"{path}/documents", "POST", permission=upload_permission,
                 summary=f"Attach a document (PDF, PNG or JPEG) to a {what}: 422 for a file that is not what it "
                         "claims, empty, or named with a folder; 413 over the size limit; 503 when the file store "
                         "does not answer (nothing attached)",
                 body=DocumentUploadSchema, body_type="multipart/form-data", response=DocumentSchema, status=201,
                 errors=(403, 404, 413, 422, 503))(upload)
    view.max_content_length = files.upload_limit
    view.too_large_message = files.too_large_message
    route(f"{path}/documents", permission=read_permission,
          summary=f"A {what}'s documents, withdrawn ones last", response=DocumentSchema, many=True,
          errors=(403, 404))(listing)


for record in RECORDS:
    _register(*record)


@route("/documents/<int:document_id>", permission="signed_in",
       summary="One document's description (the read permission of its record)", response=DocumentSchema,
       errors=(403, 404))
def document_detail(document_id: int):
    document = _visible_document(document_id)
    documents.ensure_may_read(current_user, document.entity_type,
                              documents.owner(document.entity_type, document.entity_id))
    return answer(dump(document_row(document_id)))


@route("/documents/<int:document_id>/content", permission="signed_in",
       summary="The document's bytes as stored (its content type; attachment); 409 when they no longer match "
               "their SHA-256, 503 when the file store does not answer",
       errors=(403, 404, 409, 503))
def document_content(document_id: int):
    document, data = files.readable(current_user, document_id)
    return files.download(document, data)


@route("/documents/<int:document_id>/withdraw", "POST", permission="signed_in",
       summary="Withdraw a document attached by mistake (the upload permission of its record, a reason): it stays "
               "listed as withdrawn; a lot's certificate then no longer counts for its release",
       body=DocumentWithdrawSchema, response=DocumentSchema, errors=(403, 404, 409))
def document_withdraw(document_id: int):
    _visible_document(document_id)
    data = load(DocumentWithdrawSchema, json_body())
    documents.withdraw(current_user, document_id, data["reason"])
    return answer(dump(document_row(document_id)))

