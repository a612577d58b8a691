"""CSV import of contacts (trade-show business cards, R4): check every row, then store.

``run_import`` is the one entry point for the CLI and the REST API. It reads the whole file
first and reports every invalid row with its physical line number; then, unless it is a dry
run, it stores the valid rows in the caller's transaction: all of them or nothing
(``all-or-nothing``, the default) or just the valid ones (``valid-rows``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.contacts.customfields import list_fields, validate_custom
from ekiden.contacts.importer_csv import decode_csv, read_records
from ekiden.contacts.importer_mapping import resolve_mapping
from ekiden.contacts.importer_rows import Candidate, RowProblem, parse_record
from ekiden.contacts.importer_store import Existing, Prepared, find_existing, store_rows
from ekiden.contacts.tags import clean_tag
from ekiden.errors import Invalid

Mode = Literal["all-or-nothing", "valid-rows"]
# stage ("checking" | "storing"), rows done, rows in all
Progress = Callable[[str, int, int], None]


class ImportOptions(BaseModel):
    """How to read and store one file. Validated before the file is touched."""

    model_config = ConfigDict(extra="forbid")

    encoding: Literal["auto", "utf-8", "shift_jis", "cp932"] = "auto"
    mode: Mode = "all-or-nothing"
    mapping: dict[str, str] = Field(default_factory=dict)
    ignore_unknown: bool = False
    tags: list[str] = Field(default_factory=list)
    consent: Literal["granted", "none"] = "none"
    consent_text: str | None = None
    dry_run: bool = False

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        try:
            return list(dict.fromkeys(clean_tag(t) for t in value if t.strip()))
        except Invalid as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _consent_needs_text(self) -> ImportOptions:
        text = (self.consent_text or "").strip()
        if self.consent == "granted" and not text:
            raise ValueError(
                "consent 'granted' needs the consent text the people agreed to "
                "(--consent-text / consent_text)"
            )
        if self.consent == "none" and text:
            raise ValueError("a consent text is only recorded with consent 'granted'")
        self.consent_text = text or None
        return self


class RowError(BaseModel):
    line: int = Field(description="physical line in the file; the header is line 1")
    reason: str
    column: str | None = None
    email: str | None = None


class ImportReport(BaseModel):
    """What an import did (or, for a dry run or a rejected file, would have done)."""

    import_id: int | None
    filename: str
    encoding: str
    mode: Mode
    dry_run: bool
    stored: bool = Field(description="true when contacts were written")
    mapping: dict[str, str] = Field(description="CSV column -> contact field")
    rows_total: int
    rows_invalid: int
    rows_created: int = Field(description="created, or would be created in a dry run")
    rows_updated: int = Field(description="updated, or would be updated in a dry run")
    errors: list[RowError]
    warnings: list[RowError] = Field(default_factory=list)


class ImportRejected(Invalid):
    """An all-or-nothing import with invalid rows: nothing was stored; ``report`` says why."""

    code = "invalid_rows"

    def __init__(self, report: ImportReport) -> None:
        super().__init__(
            f"{report.rows_invalid} of {report.rows_total} rows are invalid; nothing was "
            "imported (fix them, or import with mode valid-rows to store the valid ones)",
            details=report.model_dump(mode="json"),
        )
        self.report = report


def _problem(p: RowProblem) -> RowError:
    return RowError(line=p.line, reason=p.reason, column=p.column, email=p.email)


def _check(
    conn: Connection,
    candidates: list[Candidate],
    existing: dict[str, Existing],
    problems: list[RowProblem],
) -> list[Prepared]:
    """Custom values (required ones only for new contacts) and one row per contact."""
    any_required = any(f.required for f in list_fields(conn))
    seen: dict[int, int] = {}
    prepared: list[Prepared] = []
    for c in candidates:
        found = existing.get(c.email)
        if found is not None and found.contact_id in seen:
            problems.append(
                RowProblem(
                    c.line,
                    f"is the same contact as line {seen[found.contact_id]} "
                    "(one address was merged into the other)",
                    email=c.email,
                )
            )
            continue
        custom: dict[str, object] = {}
        if c.custom or (found is None and any_required):
            try:
                custom = validate_custom(conn, dict(c.custom), require=found is None)
            except Invalid as exc:
                problems.append(RowProblem(c.line, exc.message, None, c.email))
                continue
        if found is not None:
            seen[found.contact_id] = c.line
        prepared.append(Prepared(c, found, {k: v for k, v in custom.items() if v is not None}))
    return prepared


def run_import(
    conn: Connection,
    clock: Clock,
    data: bytes,
    *,
    filename: str,
    options: ImportOptions,
    progress: Progress | None = None,
) -> ImportReport:
    """Check ``data`` (a CSV file's bytes) and, unless a dry run, store it in ``conn``'s
    transaction.

    Raises Invalid for a file that cannot be read at all (encoding, mapping, malformed CSV)
    and ImportRejected when an all-or-nothing import has invalid rows; in both cases nothing
    was written. Returns the report otherwise (for valid-rows it lists the skipped rows).
    """
    decoded = decode_csv(data, options.encoding)
    header, record_iter = read_records(decoded.text)
    headers = [h.strip() for h in header.cells]
    custom_labels = {f.key: f.label for f in list_fields(conn)}
    targets = resolve_mapping(
        headers,
        options.mapping,
        custom_fields=custom_labels,
        ignore_unknown=options.ignore_unknown,
    )
    records = list(record_iter)
    problems: list[RowProblem] = []
    candidates: list[Candidate] = []
    first_line: dict[str, int] = {}
    for done, record in enumerate(records, 1):
        parsed = parse_record(record, headers, targets)
        if isinstance(parsed, RowProblem):
            problems.append(parsed)
        elif parsed.email in first_line:
            problems.append(
                RowProblem(
                    parsed.line,
                    f"duplicate email: already on line {first_line[parsed.email]}",
                    email=parsed.email,
                )
            )
        else:
            first_line[parsed.email] = parsed.line
            candidates.append(parsed)
        if progress and done % 500 == 0:
            progress("checking", done, len(records))
    existing = find_existing(conn, [c.email for c in candidates])
    prepared = _check(conn, candidates, existing, problems)
    if progress:
        progress("checking", len(records), len(records))
    problems.sort(key=lambda p: p.line)
    report = ImportReport(
        import_id=None,
        filename=filename,
        encoding=decoded.encoding,
        mode=options.mode,
        dry_run=options.dry_run,
        stored=False,
        mapping=dict(zip(headers, targets, strict=True)),
        rows_total=len(records),
        rows_invalid=len(problems),
        rows_created=sum(1 for p in prepared if p.existing is None),
        rows_updated=sum(1 for p in prepared if p.existing is not None),
        errors=[_problem(p) for p in problems],
    )
    if options.dry_run:
        return report
    if problems and options.mode == "all-or-nothing":
        raise ImportRejected(report)
    stored = store_rows(
        conn,
        clock,
        prepared,
        report=report.model_dump(mode="json"),
        tags=options.tags,
        consent_text=options.consent_text if options.consent == "granted" else None,
        progress=progress,
    )
    return report.model_copy(
        update={
            "import_id": stored.import_id,
            "stored": True,
            "warnings": [_problem(w) for w in stored.warnings],
        }
    )
