"""Storing checked import rows in bulk: a few statements per thousand rows, not per row."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.importer_rows import Candidate, RowProblem
from ekiden.contacts.models import STANDARD_FIELDS
from ekiden.contacts.service import contacts_by_identifier
from ekiden.contacts.tables import consents, contact_tags, contacts, imports
from ekiden.db.schema import UTCDateTime
from ekiden.errors import NotFound
from ekiden.tracking.events import NewEvent, record_events

CHUNK = 500
T = TypeVar("T")


@dataclass(frozen=True)
class Existing:
    contact_id: int
    custom: dict[str, Any]
    # withdrawn consent or unsubscribed: an import must not opt them in again
    consent_blocked: bool


@dataclass
class Prepared:
    candidate: Candidate
    existing: Existing | None
    custom: dict[str, Any]  # validated and coerced, empty values dropped


@dataclass
class Stored:
    import_id: int
    warnings: list[RowProblem] = field(default_factory=list)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def find_existing(conn: Connection, emails: Sequence[str]) -> dict[str, Existing]:
    """The live contact of each address that is known (also addresses absorbed by a merge)."""
    ids = contacts_by_identifier(conn, "email", emails)
    details: dict[int, Existing] = {}
    for id_chunk in chunks(sorted(set(ids.values()))):
        found = conn.execute(
            select(
                contacts.c.id,
                contacts.c.custom,
                contacts.c.email_consent,
                contacts.c.unsubscribed_at,
            ).where(contacts.c.id.in_(id_chunk))
        )
        for item in found:
            blocked = item.email_consent == "withdrawn" or item.unsubscribed_at is not None
            details[item.id] = Existing(item.id, dict(item.custom or {}), blocked)
    return {email: details[cid] for email, cid in ids.items() if cid in details}


def _insert_new(conn: Connection, now: Any, rows: Sequence[Prepared], source_ref: str) -> list[int]:
    values = [
        {
            **{name: p.candidate.standard.get(name) for name in STANDARD_FIELDS},
            "email": p.candidate.email,
            "custom": p.custom,
            "source_kind": "import",
            "source_ref": source_ref,
            "created_at": now,
            "updated_at": now,
        }
        for p in rows
    ]
    statement = insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True)
    return list(conn.execute(statement, values).scalars())


# Empty cells never clear a stored value: NULL parameters keep the column as it is.
_UPDATE = (
    update(contacts)
    .where(contacts.c.id == bindparam("b_id"))
    .values(
        {
            **{
                name: func.coalesce(
                    bindparam(f"b_{name}", type_=contacts.c[name].type), contacts.c[name]
                )
                for name in STANDARD_FIELDS
            },
            "custom": bindparam("b_custom", type_=contacts.c.custom.type),
            "updated_at": bindparam("b_updated_at", type_=UTCDateTime()),
        }
    )
)


def _update_existing(conn: Connection, now: Any, rows: Sequence[Prepared]) -> None:
    values = [
        {
            **{f"b_{name}": p.candidate.standard.get(name) for name in STANDARD_FIELDS},
            "b_id": p.existing.contact_id,
            "b_custom": {**p.existing.custom, **p.custom},
            "b_updated_at": now,
        }
        for p in rows
        if p.existing is not None
    ]
    conn.execute(_UPDATE, values)


# tags.add_tags and consent.record_consent hold the rules for one contact; an import
# applies the same writes to thousands at once (tags are already checked with clean_tag,
# consent is always "granted" from source "import"), so it issues them as bulk statements:
# per-contact calls cost several round trips each and made 10,000 rows take ~20 s.
def _attach_tags(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(contact_tags).on_conflict_do_nothing(), rows)


def _grant_consent(
    conn: Connection, now: Any, contact_ids: list[int], *, source_ref: str, text_shown: str
) -> None:
    if not contact_ids:
        return
    conn.execute(
        update(contacts).where(contacts.c.id.in_(contact_ids)).values(email_consent="granted")
    )
    conn.execute(
        insert(consents),
        [
            {
                "contact_id": contact_id,
                "channel": "email",
                "status": "granted",
                "source": "import",
                "source_ref": source_ref,
                "text_shown": text_shown,
                "recorded_at": now,
            }
            for contact_id in contact_ids
        ],
    )


def store_rows(
    conn: Connection,
    clock: Clock,
    prepared: Sequence[Prepared],
    *,
    report: dict[str, Any],
    tags: Sequence[str],
    consent_text: str | None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Stored:
    """Record the import, create and update its contacts, their tags, consent and a
    ``contact_imported`` event each, all in ``conn``'s transaction."""
    now = clock.now()
    warnings = [
        RowProblem(
            p.candidate.line,
            "consent not recorded: this contact withdrew consent or unsubscribed earlier",
            email=p.candidate.email,
        )
        for p in prepared
        if consent_text and p.existing is not None and p.existing.consent_blocked
    ]
    stored_errors = report["errors"] + [
        {"line": w.line, "reason": w.reason, "email": w.email, "level": "warning"} for w in warnings
    ]
    import_id = conn.execute(
        insert(imports)
        .values(
            filename=report["filename"],
            encoding=report["encoding"],
            mode=report["mode"].replace("-", "_"),
            mapping=report["mapping"],
            rows_total=report["rows_total"],
            rows_created=report["rows_created"],
            rows_updated=report["rows_updated"],
            rows_invalid=report["rows_invalid"],
            errors=stored_errors,
            created_at=now,
        )
        .returning(imports.c.id)
    ).scalar_one()
    source_ref = f"import:{import_id}"
    done = 0
    for chunk in chunks(prepared):
        new = [p for p in chunk if p.existing is None]
        new_ids = _insert_new(conn, now, new, source_ref) if new else []
        old = [p for p in chunk if p.existing is not None]
        if old:
            _update_existing(conn, now, old)
        ids = dict(zip((id(p) for p in new), new_ids, strict=True))
        batch: list[NewEvent] = []
        tag_rows: list[dict[str, Any]] = []
        consenting: list[int] = []
        for p in chunk:
            created = p.existing is None
            if p.existing is None:
                contact_id, blocked = ids[id(p)], False
            else:
                contact_id, blocked = p.existing.contact_id, p.existing.consent_blocked
            for tag in dict.fromkeys([*tags, *p.candidate.tags]):
                tag_rows.append({"contact_id": contact_id, "tag": tag, "created_at": now})
            if consent_text and not blocked:
                consenting.append(contact_id)
            batch.append(
                NewEvent(
                    type="contact_imported",
                    occurred_at=now,
                    source="import",
                    contact_id=contact_id,
                    properties={"import_id": import_id, "created": created},
                    message_id=f"{source_ref}:{contact_id}",
                )
            )
        _attach_tags(conn, tag_rows)
        if consent_text:
            _grant_consent(conn, now, consenting, source_ref=source_ref, text_shown=consent_text)
        record_events(conn, clock, batch)
        done += len(chunk)
        if progress:
            progress("storing", done, len(prepared))
    return Stored(import_id, warnings)


class StoredImport(BaseModel):
    """An import as recorded; ``errors`` holds the invalid rows (and warnings, level=warning)."""

    id: int
    filename: str
    encoding: str
    mode: str
    mapping: dict[str, str]
    rows_total: int
    rows_created: int
    rows_updated: int
    rows_invalid: int
    errors: list[dict[str, Any]]
    created_at: datetime


def get_import(conn: Connection, import_id: int) -> StoredImport:
    """The recorded import; NotFound for an unknown id."""
    row = conn.execute(select(imports).where(imports.c.id == import_id)).mappings().first()
    if row is None:
        raise NotFound(f"no import with id {import_id}")
    return StoredImport.model_validate({**row, "mode": str(row["mode"]).replace("_", "-")})
