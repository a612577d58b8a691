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
- ``coupons``: the contact's one-time coupon codes by the name a journey's ``issue_coupon``
  step gave them (``coupons.coupon_code``): the latest code not yet redeemed, empty when none;
- ``sender`` (``name``, ``address``, ``postal_address``), ``email`` (``key``),
  ``unsubscribe_url`` and ``preferences_url``.

Empty values (a field never filled in) render as nothing and take ``default()``'s fallback;
names that do not exist at all are template errors (422 when saving).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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
    "coupons",
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


def _slugs_many(
    conn: Connection, contact_ids: list[int]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Segment and list slugs by contact (sorted)."""
    segment_slugs: dict[int, list[str]] = {}
    list_slugs: dict[int, list[str]] = {}
    for chunk in _chunks(contact_ids):
        for contact_id, slug in conn.execute(
            select(segment_members.c.contact_id, segments.c.slug)
            .join(segments, segment_members.c.segment_id == segments.c.id)
            .where(segment_members.c.contact_id.in_(chunk))
            .order_by(segments.c.slug)
        ):
            segment_slugs.setdefault(contact_id, []).append(slug)
        for contact_id, slug in conn.execute(
            select(list_members.c.contact_id, lists.c.slug)
            .join(lists, list_members.c.list_id == lists.c.id)
            .where(list_members.c.contact_id.in_(chunk))
            .order_by(lists.c.slug)
        ):
            list_slugs.setdefault(contact_id, []).append(slug)
    return segment_slugs, list_slugs


def _tags_many(conn: Connection, contact_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for chunk in _chunks(contact_ids):
        for contact_id, tag in conn.execute(
            select(contact_tags.c.contact_id, contact_tags.c.tag)
            .where(contact_tags.c.contact_id.in_(chunk))
            .order_by(contact_tags.c.tag)
        ):
            found.setdefault(contact_id, []).append(tag)
    return found


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


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


def _coupons_many(conn: Connection, contact_ids: list[int]) -> dict[int, dict[str, str]]:
    """Coupon codes by name (the issuing step's ``field``): the latest unredeemed one each."""
    from ekiden.journeys.tables import coupons

    out: dict[int, dict[str, str]] = {}
    for chunk in _chunks(contact_ids):
        rows = conn.execute(
            select(coupons.c.contact_id, coupons.c.field, coupons.c.code)
            .where(coupons.c.contact_id.in_(chunk), coupons.c.redeemed_at.is_(None))
            .order_by(coupons.c.id)
        )
        for row in rows:
            out.setdefault(row.contact_id, {})[row.field] = row.code
    return out


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
    data = load_contexts(conn, [contact_id], used).get(contact_id)
    return None if data is None else with_extras(data, extras)


def with_extras(data: dict[str, Any], extras: Extras) -> dict[str, Any]:
    """A template context: the contact's data (``load_contexts``) and this message's
    extras (sender, email identity, its links)."""
    return {**data, **_extras(extras)}


def load_contexts(
    conn: Connection, contact_ids: Iterable[int], used: frozenset[str] | None = None
) -> dict[int, dict[str, Any]]:
    """The contact-dependent part of the template context (``contact``, ``account``,
    ``scores``, ``last_viewed``, ``last_page``, ``coupons``) for many contacts in a few queries per
    kind of data the template reads (``used``, None: everything); unknown contacts are
    absent. Complete it with ``with_extras``."""
    wanted = list(dict.fromkeys(contact_ids))
    rows: dict[int, Any] = {}
    for chunk in _chunks(wanted):
        for row in conn.execute(select(contacts).where(contacts.c.id.in_(chunk))).mappings():
            rows[row["id"]] = row
    ids = [cid for cid in wanted if cid in rows]
    if not ids:
        return {}
    custom_keys = custom_field_keys(conn) if _wants(used, "contact", "custom") else ()
    tags = _tags_many(conn, ids) if _wants(used, "contact", "tags") else {}
    slugs: tuple[dict[int, list[str]], dict[int, list[str]]] = ({}, {})
    if _wants(used, "contact", "segments") or _wants(used, "contact", "lists"):
        slugs = _slugs_many(conn, ids)
    found_accounts: dict[int, Any] = {}
    account_ids = sorted({rows[cid]["account_id"] for cid in ids} - {None})
    if account_ids and _wants(used, "account"):
        for chunk in _chunks(account_ids):
            for found in conn.execute(select(accounts).where(accounts.c.id.in_(chunk))).mappings():
                found_accounts[found["id"]] = found
    scores = current_scores(conn, ids) if _wants(used, "scores") else {}
    viewed, page = _wants(used, "last_viewed"), _wants(used, "last_page")
    codes = _coupons_many(conn, ids) if _wants(used, "coupons") else {}
    out: dict[int, dict[str, Any]] = {}
    for cid in ids:
        row = rows[cid]
        contact = Record({name: row[name] for name in CONTACT_COLUMNS})
        contact.update(
            full_name=full_name(row["last_name"], row["first_name"]),
            full_name_kana=full_name(row["last_name_kana"], row["first_name_kana"]),
            custom=_custom(row["custom"], custom_keys) if custom_keys else Record({}),
            tags=tags.get(cid, []),
            segments=slugs[0].get(cid, []),
            lists=slugs[1].get(cid, []),
        )
        account = Record(dict.fromkeys(ACCOUNT_FIELDS), present=False)
        account["custom"] = Loose({})
        company = found_accounts.get(row["account_id"])
        if company is not None:
            account = Record({name: company[name] for name in ACCOUNT_FIELDS if name != "custom"})
            account["custom"] = Loose(dict(company["custom"] or {}))
        out[cid] = {
            "contact": contact,
            "account": account,
            "scores": Scores(scores.get(cid, {})),
            "last_viewed": _last_viewed(conn, cid)
            if viewed
            else Record(dict.fromkeys(VIEWED_FIELDS), present=False),
            "last_page": _last_page(conn, cid)
            if page
            else Record(dict.fromkeys(PAGE_FIELDS), present=False),
            "coupons": Loose(codes.get(cid, {})),
        }
    return out


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
        "coupons": Loose({}),
        **_extras(extras),
    }
