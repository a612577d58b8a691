"""Reading an uploaded CSV: encoding detection and records with their physical line numbers."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from ekiden.errors import Invalid

ENCODINGS = ("auto", "utf-8", "shift_jis", "cp932")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the codec actually used: utf-8, utf-8-sig or cp932


@dataclass(frozen=True)
class Record:
    line: int  # physical line the record starts on; the header is line 1
    cells: list[str]


def _position(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"byte {offset} (line {line}, value 0x{data[offset]:02x})"


def _decode_strict(data: bytes, codec: str) -> str | UnicodeDecodeError:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        return exc


def decode_csv(data: bytes, encoding: str = "auto") -> Decoded:
    """The file's text. ``auto`` tries strict UTF-8 (a BOM is allowed), then CP932.

    Shift_JIS is read with CP932, the superset Excel writes (①, ㈱, NEC/IBM extensions).
    Raises Invalid naming the first byte that cannot be decoded, with its line.
    """
    if encoding not in ENCODINGS:
        raise Invalid(
            f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}",
            code="bad_encoding",
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise Invalid(
            "the file looks like UTF-16 (it has a UTF-16 byte-order mark or NUL bytes); "
            "save it as 'CSV UTF-8' or 'CSV (Shift_JIS)' and try again",
            code="bad_encoding",
        )
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise Invalid(
            f"the file contains a NUL byte at {_position(data, offset)}", code="bad_encoding"
        )
    utf8_codec = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    if encoding in ("auto", "utf-8"):
        result = _decode_strict(data, utf8_codec)
        if isinstance(result, str):
            return Decoded(result, utf8_codec)
        if encoding == "utf-8":
            raise Invalid(
                f"the file is not valid UTF-8: {_position(data, result.start)}",
                code="bad_encoding",
            )
        utf8_error = result
    result = _decode_strict(data, "cp932")
    if isinstance(result, str):
        return Decoded(result, "cp932")
    if encoding != "auto":
        raise Invalid(
            f"the file is not valid Shift_JIS/CP932: {_position(data, result.start)}",
            code="bad_encoding",
        )
    raise Invalid(
        "the file is neither UTF-8 nor Shift_JIS/CP932: as UTF-8 it breaks at "
        f"{_position(data, utf8_error.start)}, as CP932 at {_position(data, result.start)}",
        code="bad_encoding",
    )


def read_records(text: str) -> tuple[Record, Iterator[Record]]:
    """The header record and an iterator over the data records (blank lines skipped).

    Python's csv module joins quoted cells that span lines; ``line_num`` after each record
    tells where the next one starts, so line numbers stay true to the file.
    Raises Invalid for an empty file or a malformed record (e.g. an unterminated quote).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def records() -> Iterator[Record]:
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise Invalid(
                    f"line {start}: the CSV is malformed ({exc})", code="malformed_csv"
                ) from None
            record = Record(start, cells)
            start = reader.line_num + 1
            if any(cell.strip() for cell in cells):
                yield record

    iterator = records()
    header = next(iterator, None)
    if header is None:
        raise Invalid("the file is empty: it needs a header row", code="malformed_csv")
    return header, iterator
