"""CSV export of contacts, and the CSV writing every export shares.

Exports stream: rows are read in chunks of ``CHUNK`` by keyset on the id (each chunk in its
own short transaction, so a long export never holds a lock or a snapshot), formatted, and
written out as encoded bytes, so a million rows never sit in memory at once.

CSV injection: a cell starting with = + - @ (or a tab / carriage return) would be run as a
formula by Excel or LibreOffice. Such cells are written with a leading ' (OWASP's advice);
plain numbers such as -5 or +81 are left alone. The importer removes the ' again.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, func, select

from ekiden.contacts.customfields import list_fields
from ekiden.contacts.importer_rows import FORMULA_STARTS
from ekiden.contacts.models import STANDARD_FIELDS
from ekiden.contacts.tables import contact_tags, contacts

CHUNK = 1000
ExportEncoding = Literal["utf-8", "utf-8-sig", "cp932"]
EXPORT_ENCODINGS: tuple[ExportEncoding, ...] = ("utf-8", "utf-8-sig", "cp932")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")

CONTACT_COLUMNS = (
    "id",
    "email",
    "external_id",
    *STANDARD_FIELDS,
    "account_id",
    "owner_id",
    "email_consent",
    "unsubscribed_at",
    "suppressed_at",
    "suppression_reason",
    "source_kind",
    "source_ref",
    "created_at",
    "updated_at",
    "last_seen_at",
)


def format_cell(value: Any) -> str:
    """A stored value as CSV text: ISO 8601 UTC times ("Z"), true/false, JSON for objects,
    ";"-joined lists (as multi-choice and tag cells are imported)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ";".join(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def safe_cell(text: str) -> str:
    """Defuse CSV injection: prefix ' to text a spreadsheet would run as a formula."""
    if text.startswith(FORMULA_STARTS) and not _NUMBER.match(text):
        return "'" + text
    return text


class CsvEncoder:
    """Rows -> encoded CSV bytes. cp932 cannot hold every character (emoji, some kanji):
    those become "?" and are counted in ``replaced`` so the caller can warn."""

    def __init__(self, encoding: ExportEncoding) -> None:
        if encoding not in EXPORT_ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(EXPORT_ENCODINGS)}")
        self.encoding = encoding
        self.replaced = 0
        self._started = False

    def encode(self, rows: Iterable[Sequence[Any]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerows([safe_cell(format_cell(v)) for v in row] for row in rows)
        text = buffer.getvalue()
        prefix = b""
        if not self._started:
            self._started = True
            prefix = b"\xef\xbb\xbf" if self.encoding == "utf-8-sig" else b""
        codec = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        try:
            return prefix + text.encode(codec)
        except UnicodeEncodeError:
            self.replaced += sum(1 for ch in text if not _encodable(ch, codec))
            return prefix + text.encode(codec, errors="replace")


def _encodable(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def stream_csv(
    header: Sequence[str], chunks: Iterable[Sequence[Sequence[Any]]], encoder: CsvEncoder
) -> Iterator[bytes]:
    """The header, then each chunk of rows, as encoded bytes."""
    yield encoder.encode([header])
    for rows in chunks:
        yield encoder.encode(rows)


def count_contacts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(contacts)
                .where(contacts.c.merged_into_id.is_(None))
            ).scalar_one()
        )


def contact_header(engine: Engine) -> list[str]:
    """Standard columns, ``tags`` and one ``custom.<key>`` column per defined custom field."""
    with engine.connect() as conn:
        keys = [f.key for f in list_fields(conn)]
    return [*CONTACT_COLUMNS, "tags", *(f"custom.{k}" for k in keys)]


def contact_chunks(engine: Engine, header: Sequence[str]) -> Iterator[list[list[Any]]]:
    """Live contacts (merged-away tombstones excluded) in id order, ``CHUNK`` rows at a time,
    with the columns of ``header`` (from ``contact_header``)."""
    custom_keys = [h.removeprefix("custom.") for h in header if h.startswith("custom.")]
    after = 0
    while True:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    select(*(contacts.c[c] for c in CONTACT_COLUMNS), contacts.c.custom)
                    .where(contacts.c.merged_into_id.is_(None), contacts.c.id > after)
                    .order_by(contacts.c.id)
                    .limit(CHUNK)
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            tags: dict[int, list[str]] = {}
            for tag_row in conn.execute(
                select(contact_tags.c.contact_id, contact_tags.c.tag)
                .where(contact_tags.c.contact_id.in_([r["id"] for r in rows]))
                .order_by(contact_tags.c.contact_id, contact_tags.c.tag)
            ):
                tags.setdefault(tag_row.contact_id, []).append(tag_row.tag)
        yield [
            [
                *(r[c] for c in CONTACT_COLUMNS),
                tags.get(r["id"], []),
                *((r["custom"] or {}).get(k) for k in custom_keys),
            ]
            for r in rows
        ]
        after = rows[-1]["id"]
