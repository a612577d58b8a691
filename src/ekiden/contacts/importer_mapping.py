"""Which CSV column fills which contact field: automatic header recognition plus overrides.

Targets are the standard contact fields, ``email``, ``tags``, ``custom.<key>`` (a defined
custom field), the two splitting targets ``full_name`` / ``full_name_kana`` ("山田 太郎":
family name first, split on the first space) and ``ignore``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ekiden.contacts.models import STANDARD_FIELDS
from ekiden.errors import Invalid

IGNORE = "ignore"
TARGETS = frozenset({*STANDARD_FIELDS, "email", "tags", "full_name", "full_name_kana", IGNORE})
# Several columns may feed one target only where the values can be combined.
REPEATABLE = frozenset({"tags", IGNORE})

_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "e-mail",
        "mail",
        "emailaddress",
        "mailaddress",
        "メールアドレス",
        "メール",
        "eメール",
        "eメールアドレス",
        "電子メール",
    ),
    "last_name": ("lastname", "familyname", "surname", "姓", "名字", "苗字", "姓(漢字)"),
    "first_name": ("firstname", "givenname", "名", "名(漢字)"),
    "full_name": ("name", "fullname", "氏名", "名前", "お名前", "氏名(漢字)"),
    "last_name_kana": (
        "lastnamekana",
        "セイ",
        "せい",
        "姓(カナ)",
        "姓(フリガナ)",
        "姓カナ",
        "姓フリガナ",
        "姓(ふりがな)",
    ),
    "first_name_kana": (
        "firstnamekana",
        "メイ",
        "めい",
        "名(カナ)",
        "名(フリガナ)",
        "名カナ",
        "名フリガナ",
        "名(ふりがな)",
    ),
    "full_name_kana": (
        "fullnamekana",
        "namekana",
        "フリガナ",
        "ふりがな",
        "カナ",
        "氏名カナ",
        "氏名(カナ)",
        "氏名(フリガナ)",
        "シメイ",
    ),
    "company": (
        "company",
        "companyname",
        "organization",
        "organisation",
        "会社名",
        "会社",
        "企業名",
        "社名",
        "勤務先",
        "法人名",
    ),
    "department": ("department", "dept", "division", "部署", "部署名", "所属", "部門"),
    "job_title": ("jobtitle", "title", "position", "役職", "役職名", "肩書", "肩書き"),
    "phone": ("phone", "tel", "telephone", "phonenumber", "電話番号", "電話", "tel番号"),
    "industry": ("industry", "業種", "業界"),
    "country": ("country", "countrycode", "国", "国名", "国コード"),
    "time_zone": ("timezone", "tz", "タイムゾーン"),
    "tags": ("tags", "tag", "タグ"),
}


def header_key(header: str) -> str:
    """Compare headers loosely: NFKC (full-width -> ASCII), case, spaces, _ and - ignored."""
    text = unicodedata.normalize("NFKC", header).strip().lower()
    return "".join(ch for ch in text if ch not in " _-\u3000")


_BY_KEY = {header_key(alias): target for target, names in _ALIASES.items() for alias in names}


def automatic_target(header: str, custom_keys: Mapping[str, str]) -> str | None:
    """The field a header means by itself, or None when it is not recognised.

    ``custom_keys`` maps header keys of custom field keys and labels to the field key.
    """
    text = unicodedata.normalize("NFKC", header).strip()
    if text.lower().startswith("custom."):
        return f"custom.{text[7:].strip()}"
    key = header_key(header)
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key in custom_keys:
        return f"custom.{custom_keys[key]}"
    return None


def load_mapping_file(path: Path) -> dict[str, str]:
    """A mapping file: YAML or JSON object ``{"CSV column": "field"}``; Invalid otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read mapping file {path}: {exc}", code="bad_mapping") from None
    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise Invalid(f"mapping file {path} is not valid: {exc}", code="bad_mapping") from None
    return mapping_from_object(data, origin=str(path))


def mapping_from_object(data: Any, *, origin: str) -> dict[str, str]:
    """Check a decoded mapping object: column names to field names, both strings."""
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise Invalid(
            f"{origin} must be an object of 'CSV column: field' pairs", code="bad_mapping"
        )
    return {k: v.strip() for k, v in data.items()}


def parse_map_options(items: Sequence[str]) -> dict[str, str]:
    """``--map COLUMN=field`` options (the last ``=`` separates, so columns may contain =)."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.rpartition("=")
        if not sep or not column.strip() or not target.strip():
            raise Invalid(f"--map {item!r} must look like COLUMN=field", code="bad_mapping")
        mapping[column.strip()] = target.strip()
    return mapping


def resolve_mapping(
    headers: Sequence[str],
    overrides: Mapping[str, str],
    *,
    custom_fields: Mapping[str, str],
    ignore_unknown: bool,
) -> list[str]:
    """The target of every column, in column order; Invalid naming every problem.

    ``custom_fields`` maps each defined custom field key to its label. Overrides name
    columns exactly as in the header row.
    """
    custom_lookup = {header_key(k): k for k in custom_fields} | {
        header_key(label): k for k, label in custom_fields.items() if label
    }
    problems: list[str] = []
    stripped = [h.strip() for h in headers]
    missing = [c for c in overrides if c not in stripped]
    if missing:
        problems.append(f"the mapping names columns the file does not have: {', '.join(missing)}")
    targets: list[str] = []
    unknown: list[str] = []
    for header in stripped:
        target = overrides.get(header) or automatic_target(header, custom_lookup)
        if target is None:
            if not ignore_unknown:
                unknown.append(header or "(empty header)")
            target = IGNORE
        targets.append(target)
    if unknown:
        problems.append(
            f"unknown columns: {', '.join(unknown)} (map them with --map 'COLUMN=field', "
            "to 'ignore', or pass --ignore-unknown)"
        )
    bad = sorted(
        {
            t
            for t in targets
            if t not in TARGETS
            and not (t.startswith("custom.") and t.removeprefix("custom.") in custom_fields)
        }
    )
    if bad:
        problems.append(
            f"unknown target fields: {', '.join(bad)} (a custom field must be defined first)"
        )
    repeated = sorted({t for t in targets if t not in REPEATABLE and targets.count(t) > 1})
    if repeated:
        problems.append(f"several columns map to the same field: {', '.join(repeated)}")
    if "email" not in targets:
        problems.append("no column maps to email (name it e.g. 'email' or 'メールアドレス')")
    if problems:
        raise Invalid("; ".join(problems), code="bad_mapping")
    return targets
