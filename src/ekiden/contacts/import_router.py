"""REST API for CSV import and export (admin key):

- ``POST /api/imports/contacts``: multipart upload (field ``file``) plus the import options as
  form fields; answers the import report (422 with the report in ``error.details`` when an
  all-or-nothing import has invalid rows, 413 over the size limit).
- ``GET /api/imports/{id}``: a stored import.
- ``GET /api/export/contacts.csv`` and ``GET /api/export/events.csv``: streamed CSV.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from ekiden.contacts.exporter import (
    CsvEncoder,
    ExportEncoding,
    contact_chunks,
    contact_header,
    stream_csv,
)
from ekiden.contacts.importer import ImportOptions, ImportReport, run_import
from ekiden.contacts.importer_mapping import mapping_from_object, parse_map_options
from ekiden.contacts.importer_store import StoredImport, get_import
from ekiden.errors import Invalid, Malformed, TooLarge
from ekiden.tracking.export import EVENT_COLUMNS, EventFilters, event_chunks, parse_moment
from ekiden.web.deps import AppContext, Conn, Ctx, require_admin

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# room for the multipart boundaries and the option fields around the file itself
_FORM_OVERHEAD = 64 * 1024
_FIELDS = frozenset(
    {"file", "dry_run", "mode", "encoding", "mapping", "map", "ignore_unknown", "tag"}
    | {"consent", "consent_text"}
)
_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "dry_run": {"type": "boolean", "default": False},
                        "mode": {"enum": ["all-or-nothing", "valid-rows"]},
                        "encoding": {"enum": ["auto", "utf-8", "shift_jis", "cp932"]},
                        "mapping": {"type": "string", "description": 'JSON {"column": "field"}'},
                        "map": {"type": "array", "items": {"type": "string"}},
                        "ignore_unknown": {"type": "boolean", "default": False},
                        "tag": {"type": "array", "items": {"type": "string"}},
                        "consent": {"enum": ["granted", "none"]},
                        "consent_text": {"type": "string"},
                    },
                }
            }
        },
    }
}

router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)], tags=["import/export"])


def _options(form: FormData) -> ImportOptions:
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise Invalid(f"unknown form fields: {', '.join(unknown)}", code="invalid_options")
    raw: dict[str, Any] = {
        k: form[k] for k in _FIELDS - {"file", "map", "tag", "mapping"} if k in form
    }
    mapping: dict[str, str] = {}
    if "mapping" in form:
        try:
            mapping = mapping_from_object(json.loads(str(form["mapping"])), origin="mapping")
        except ValueError:
            raise Invalid("mapping must be a JSON object", code="bad_mapping") from None
    mapping.update(parse_map_options([str(v) for v in form.getlist("map")]))
    try:
        return ImportOptions.model_validate(
            {**raw, "mapping": mapping, "tags": [str(t) for t in form.getlist("tag")]}
        )
    except ValidationError as exc:
        message = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
            if e["loc"]
            else str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise Invalid(message, code="invalid_options") from None


def _import(ctx: AppContext, data: bytes, filename: str, options: ImportOptions) -> ImportReport:
    with ctx.engine.begin() as conn:
        return run_import(conn, ctx.clock, data, filename=filename, options=options)


@router.post(
    "/imports/contacts",
    openapi_extra=_UPLOAD_SCHEMA,
    responses={200: {"model": ImportReport}, 201: {"model": ImportReport}},
)
async def import_contacts(request: Request, ctx: Ctx) -> JSONResponse:
    """Check (``dry_run=true``, 200) or import (201) a CSV file of contacts."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + _FORM_OVERHEAD:
        raise TooLarge(f"the upload is over the limit of {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        async with request.form(max_files=1, max_fields=len(_FIELDS) + 50) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Invalid(
                    "send the CSV file as multipart/form-data field 'file'", code="no_file"
                )
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            filename = upload.filename or "upload.csv"
            options = _options(form)
    except (Invalid, TooLarge):
        raise
    except Exception as exc:  # the multipart parser raises its own types for broken bodies
        raise Malformed(f"the multipart body cannot be read: {exc}") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"the file is over the limit of {MAX_UPLOAD_BYTES // 2**20} MB")
    report = await run_in_threadpool(_import, ctx, data, filename, options)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.dry_run else 201)


@router.get("/imports/{import_id}", response_model=StoredImport)
def read_import(import_id: int, conn: Conn) -> StoredImport:
    """A stored import: counts, mapping, encoding, mode and every invalid row."""
    return get_import(conn, import_id)


def _csv_response(
    chunks: Iterator[bytes], encoding: ExportEncoding, name: str
) -> StreamingResponse:
    charset = "shift_jis" if encoding == "cp932" else "utf-8"
    return StreamingResponse(
        chunks,
        media_type=f"text/csv; charset={charset}",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


Encoding = Annotated[ExportEncoding, Query(description="utf-8, utf-8-sig or cp932 (Excel).")]


@router.get("/export/contacts.csv", response_class=StreamingResponse)
def export_contacts(ctx: Ctx, encoding: Encoding = "utf-8") -> StreamingResponse:
    """Every live contact: standard fields, tags, consent state, ``custom.<key>`` columns."""
    header = contact_header(ctx.engine)
    rows = contact_chunks(ctx.engine, header)
    return _csv_response(stream_csv(header, rows, CsvEncoder(encoding)), encoding, "contacts.csv")


@router.get("/export/events.csv", response_class=StreamingResponse)
def export_events(
    ctx: Ctx,
    encoding: Encoding = "utf-8",
    since: Annotated[str | None, Query(description="ISO time with offset, inclusive.")] = None,
    until: Annotated[str | None, Query(description="ISO time with offset, exclusive.")] = None,
    event_type: Annotated[str | None, Query(alias="type", description="Event type.")] = None,
    contact: Annotated[int | None, Query(description="Only this contact's events.")] = None,
) -> StreamingResponse:
    """The behaviour history, oldest first; properties and context as JSON."""
    filters = EventFilters(
        since=parse_moment(since, name="since") if since else None,
        until=parse_moment(until, name="until") if until else None,
        type=event_type,
        contact_id=contact,
    )
    rows = event_chunks(ctx.engine, filters)
    body = stream_csv(list(EVENT_COLUMNS), rows, CsvEncoder(encoding))
    return _csv_response(body, encoding, "events.csv")
