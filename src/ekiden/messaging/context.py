"""What a template may use: the contact, their account, scores, segments and recent behaviour.

Names available in every template (docs/EMAIL.md lists them for marketers):

- ``contact``: the contact's fields (``last_name``, ``first_name``, ``company``, …), plus
  ``full_name`` (Japanese order: 姓 名; "First Last" when both parts are Latin letters),
  ``full_name_kana``, ``custom.<key>``, ``tags``, ``segments`` and ``lists`` (slugs),
  ``buying_stage`` and ``lifecycle_stage`` (stage keys, when stages are in use);
- ``account``: the company (``name``, ``domain``, ``industry``, ``employees``, …);
- ``scores``: current scores by key (``scores.behaviour``), missing keys are empty;
- ``last_viewed``: the product viewed last (a ``Product Viewed`` event, else a page under
  ``/products/``), false when none: ``name``, ``url``, ``path``, ``product_id``, ``category``;
- ``last_page``: the last page viewed (``url``, ``path``, ``title``), false when none;
- ``sender`` (``name``, ``address``, ``postal_address``), ``email`` (``key``),
  ``unsubscribe_url`` and ``preferences_url``.

Empty values (a field never filled in) render as nothing and take ``default()``'s fallback;
names that do not exist at all are template errors (422 when saving).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, or_, select

from ekiden.contacts.tables import accounts, contact_tags, contacts, custom_fields
from ekiden.scoring.service import current_scores
from ekiden.segments.tables import list_members, lists, segment_members, segments
from ekiden.tracking.tables import events

CONTACT_COLUMNS = (
    "id",
    "buying_stage",
    "lifecycle_stage",
    "email",
    "external_id",
    "last_name",
    "first_name",
    "last_name_kana",
    "first_name_kana",
    "company",
    "department",
    "job_title",
    "industry",
    "phone",
    "country",
    "time_zone",
    "created_at",
    "last_seen_at",
)
CONTACT_EXTRAS = ("full_name", "full_name_kana", "custom", "tags", "segments", "lists")
CONTACT_FIELDS = CONTACT_COLUMNS + CONTACT_EXTRAS
ACCOUNT_FIELDS = ("id", "name", "domain", "industry", "employees", "country", "custom")
VIEWED_FIELDS = ("name", "url", "path", "product_id", "sku", "category", "price", "viewed_at")
PAGE_FIELDS = ("url", "path", "title", "viewed_at")
SENDER_FIELDS = ("name", "address", "postal_address")
EMAIL_FIELDS = ("key", "send", "variant")
TOP_LEVEL = (
    "contact",
    "account",
    "scores",
    "last_viewed",
    "last_page",
    "sender",
    "email",
    "unsubscribe_url",
    "preferences_url",
)
# what each record's attributes may be; `custom` is checked against the defined custom fields
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": CONTACT_FIELDS,
    "account": ACCOUNT_FIELDS,
    "last_viewed": VIEWED_FIELDS,
    "last_page": PAGE_FIELDS,
    "sender": SENDER_FIELDS,
    "email": EMAIL_FIELDS,
}

_LATIN = re.compile(r"^[A-Za-z][A-Za-z .'\-]*$")


class Record(dict[str, Any]):
    """A dict whose truth is whether the thing exists (an empty ``last_viewed`` is false but
    its fields still resolve to empty values)."""

    def __init__(self, values: dict[str, Any], *, present: bool = True) -> None:
        super().__init__(values)
        self.present = present

    def __bool__(self) -> bool:
        return self.present


class Loose(Record):
    """A record without a fixed set of fields (an account's custom values): a key it does not
    have is empty rather than an error."""

    def __missing__(self, key: str) -> None:
        return None


class Scores(dict[str, float]):
    """Scores by key; a key the contact has no points for is empty (None)."""

    def __missing__(self, key: str) -> None:
        return None


def full_name(last: str | None, first: str | None) -> str:
    """姓 名 for Japanese names; "First Last" when both parts are written in Latin letters."""
    last, first = (last or "").strip(), (first or "").strip()
    if last and first:
        if _LATIN.match(last) and _LATIN.match(first):
            return f"{first} {last}"
        return f"{last} {first}"
    return last or first


@dataclass(frozen=True)
class Extras:
    """Non-contact names: sender, email identity and the links of this message."""

    sender_name: str
    sender_address: str
    postal_address: str
    email_key: str
    send_key: str
    variant: str | None
    unsubscribe_url: str
    preferences_url: str


def custom_field_keys(conn: Connection) -> tuple[str, ...]:
    return tuple(conn.execute(select(custom_fields.c.key).order_by(custom_fields.c.key)).scalars())


def _slugs(conn: Connection, contact_id: int) -> tuple[list[str], list[str]]:
    segment_slugs = conn.execute(
        select(segments.c.slug)
        .join(segment_members, segment_members.c.segment_id == segments.c.id)
        .where(segment_members.c.contact_id == contact_id)
        .order_by(segments.c.slug)
    ).scalars()
    list_slugs = conn.execute(
        select(lists.c.slug)
        .join(list_members, list_members.c.list_id == lists.c.id)
        .where(list_members.c.contact_id == contact_id)
        .order_by(lists.c.slug)
    ).scalars()
    return list(segment_slugs), list(list_slugs)


def _scores(conn: Connection, contact_id: int) -> Scores:
    return Scores(current_scores(conn, [contact_id]).get(contact_id, {}))


def _last_viewed(conn: Connection, contact_id: int) -> Record:
    row = conn.execute(
        select(events.c.type, events.c.path, events.c.properties, events.c.occurred_at)
        .where(
            events.c.contact_id == contact_id,
            events.c.machine.is_(False),
            or_(
                events.c.type == "Product Viewed",
                (events.c.type == "page") & events.c.path.like("/products/%"),
            ),
        )
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return Record(dict.fromkeys(VIEWED_FIELDS), present=False)
    props: dict[str, Any] = row.properties or {}
    return Record(
        {
            "name": props.get("name") or props.get("title"),
            "url": props.get("url"),
            "path": row.path or props.get("path"),
            "product_id": props.get("product_id"),
            "sku": props.get("sku"),
            "category": props.get("category"),
            "price": props.get("price"),
            "viewed_at": row.occurred_at,
        }
    )


def _last_page(conn: Connection, contact_id: int) -> Record:
    row = conn.execute(
        select(events.c.path, events.c.name, events.c.properties, events.c.occurred_at)
        .where(
            events.c.contact_id == contact_id,
            events.c.type == "page",
            events.c.machine.is_(False),
        )
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return Record(dict.fromkeys(PAGE_FIELDS), present=False)
    props: dict[str, Any] = row.properties or {}
    return Record(
        {
            "url": props.get("url"),
            "path": row.path,
            "title": props.get("title") or row.name,
            "viewed_at": row.occurred_at,
        }
    )


def _custom(values: dict[str, Any] | None, keys: Iterable[str]) -> Record:
    values = values or {}
    return Record({key: values.get(key) for key in keys})


def _wants(used: frozenset[str] | None, name: str, attribute: str | None = None) -> bool:
    if used is None:
        return True
    if attribute is None:
        return name in used
    return f"{name}.{attribute}" in used or f"{name}.*" in used


def build_context(
    conn: Connection, contact_id: int, extras: Extras, used: frozenset[str] | None = None
) -> dict[str, Any] | None:
    """What a template may use for ``contact_id``; None when the contact is unknown.
    ``used`` (``templates.names_used``) limits the queries to what the template reads;
    the rest is left empty. None loads everything."""
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    if row is None:
        return None
    contact = Record({name: row[name] for name in CONTACT_COLUMNS})
    contact.update(
        full_name=full_name(row["last_name"], row["first_name"]),
        full_name_kana=full_name(row["last_name_kana"], row["first_name_kana"]),
        custom=Record({}),
        tags=[],
        segments=[],
        lists=[],
    )
    if _wants(used, "contact", "custom"):
        contact["custom"] = _custom(row["custom"], custom_field_keys(conn))
    if _wants(used, "contact", "tags"):
        contact["tags"] = list(
            conn.execute(
                select(contact_tags.c.tag)
                .where(contact_tags.c.contact_id == contact_id)
                .order_by(contact_tags.c.tag)
            ).scalars()
        )
    if _wants(used, "contact", "segments") or _wants(used, "contact", "lists"):
        contact["segments"], contact["lists"] = _slugs(conn, contact_id)
    account = Record(dict.fromkeys(ACCOUNT_FIELDS), present=False)
    account["custom"] = Loose({})
    if row["account_id"] is not None and _wants(used, "account"):
        found = (
            conn.execute(select(accounts).where(accounts.c.id == row["account_id"]))
            .mappings()
            .first()
        )
        if found is not None:
            account = Record({name: found[name] for name in ACCOUNT_FIELDS if name != "custom"})
            account["custom"] = Loose(dict(found["custom"] or {}))
    nothing_viewed = Record(dict.fromkeys(VIEWED_FIELDS), present=False)
    no_page = Record(dict.fromkeys(PAGE_FIELDS), present=False)
    return {
        "contact": contact,
        "account": account,
        "scores": _scores(conn, contact_id) if _wants(used, "scores") else Scores(),
        "last_viewed": _last_viewed(conn, contact_id)
        if _wants(used, "last_viewed")
        else nothing_viewed,
        "last_page": _last_page(conn, contact_id) if _wants(used, "last_page") else no_page,
        **_extras(extras),
    }


def _extras(extras: Extras) -> dict[str, Any]:
    return {
        "sender": Record(
            {
                "name": extras.sender_name,
                "address": extras.sender_address,
                "postal_address": extras.postal_address,
            }
        ),
        "email": Record(
            {"key": extras.email_key, "send": extras.send_key, "variant": extras.variant}
        ),
        "unsubscribe_url": extras.unsubscribe_url,
        "preferences_url": extras.preferences_url,
    }


def sample_context(custom_keys: Iterable[str], extras: Extras) -> dict[str, Any]:
    """A context where every known name has a value: what a template is checked against."""
    keys = list(custom_keys)
    contact = Record(dict.fromkeys(CONTACT_FIELDS, "sample"))
    contact.update(
        id=1,
        full_name="山田 花子",
        last_name="山田",
        first_name="花子",
        custom=Record(dict.fromkeys(keys, "sample")),
        tags=["sample"],
        segments=["sample"],
        lists=["sample"],
    )
    account = Record(dict.fromkeys(ACCOUNT_FIELDS, "sample"))
    account.update(id=1, employees=100, custom=Loose({}))
    return {
        "contact": contact,
        "account": account,
        "scores": Scores(),
        "last_viewed": Record(dict.fromkeys(VIEWED_FIELDS, "sample")),
        "last_page": Record(dict.fromkeys(PAGE_FIELDS, "sample")),
        **_extras(extras),
    }
