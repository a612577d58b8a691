"""Creating, finding and updating contacts. Every other capability goes through here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.contacts.customfields import validate_custom
from ekiden.contacts.emails import normalise_email
from ekiden.contacts.models import Contact, ContactChanges
from ekiden.contacts.tables import accounts, contact_tags, contacts, identities
from ekiden.contacts.tags import add_tags, clean_tag
from ekiden.db.lists import one_of
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.segments.dirty import mark_dirty

SOURCE_KINDS = ("form", "import", "api", "ingest")


@dataclass(frozen=True)
class Upserted:
    contact_id: int
    created: bool


def find_contact_id(
    conn: Connection, *, email: str | None = None, external_id: str | None = None
) -> int | None:
    """The live contact with this user id or email (also an email absorbed by a merge)."""
    if external_id:
        found = conn.execute(
            select(contacts.c.id, contacts.c.merged_into_id).where(
                contacts.c.external_id == external_id
            )
        ).first()
        if found is not None:
            return live_contact_id(conn, found.id)
        by_identity = _identity_contact(conn, "user_id", external_id)
        if by_identity is not None:
            return by_identity
    if email:
        address = normalise_email(email)
        found_id = conn.execute(
            select(contacts.c.id).where(contacts.c.email == address)
        ).scalar_one_or_none()
        if found_id is not None:
            return live_contact_id(conn, found_id)
        return _identity_contact(conn, "email", address)
    return None


def contacts_by_identifier(
    conn: Connection, kind: Literal["email", "user_id"], values: Iterable[str]
) -> dict[str, int]:
    """The live contact of each known value (emails already normalised): the contacts column
    first, then identifiers absorbed by a merge or an alias. One or two queries per 500."""
    column = contacts.c.email if kind == "email" else contacts.c.external_id
    wanted = sorted({v for v in values if v})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(contacts.c.id, column.label("value"), contacts.c.merged_into_id).where(
                one_of(conn, column, chunk)
            )
        )
        for row in rows:
            # merge tombstones are rare: following them one by one is fine
            live = row.id if row.merged_into_id is None else live_contact_id(conn, row.id)
            if live is not None:
                found[row.value] = live
        missing = [v for v in chunk if v not in found]
        if missing:
            absorbed = conn.execute(
                select(identities.c.value, identities.c.contact_id).where(
                    identities.c.kind == kind, one_of(conn, identities.c.value, missing)
                )
            )
            for identity in absorbed:
                live = live_contact_id(conn, identity.contact_id)
                if live is not None:
                    found[identity.value] = live
    return found


def _identity_contact(conn: Connection, kind: str, value: str) -> int | None:
    contact_id = conn.execute(
        select(identities.c.contact_id).where(
            identities.c.kind == kind, identities.c.value == value
        )
    ).scalar_one_or_none()
    return None if contact_id is None else live_contact_id(conn, contact_id)


def live_contact_id(conn: Connection, contact_id: int) -> int | None:
    """Follow merge tombstones to the contact that holds the history now."""
    seen: set[int] = set()
    current: int | None = contact_id
    while current is not None and current not in seen:
        seen.add(current)
        row = conn.execute(
            select(contacts.c.merged_into_id).where(contacts.c.id == current)
        ).first()
        if row is None:
            return None
        if row.merged_into_id is None:
            return current
        current = row.merged_into_id
    return None


def upsert_contact(
    conn: Connection,
    clock: Clock,
    *,
    email: str | None = None,
    external_id: str | None = None,
    changes: ContactChanges | None = None,
    source_kind: str,
    source_ref: str | None = None,
    require_custom: bool = False,
) -> Upserted:
    """Find the contact by user id, then by email, and apply ``changes``; create it if new.

    When the user id and the email point at two different contacts, the user id's contact is
    updated and keeps its own email (they can be merged deliberately later).
    Raises Invalid for a bad email or custom value; nothing is written then.
    """
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {source_kind}")
    if not email and not external_id:
        raise Invalid("a contact needs an email or a user id", code="no_identity")
    changes = changes or ContactChanges()
    address = normalise_email(email) if email else None
    now = clock.now()
    existing_id = find_contact_id(conn, external_id=external_id) if external_id else None
    if existing_id is None and address:
        existing_id = find_contact_id(conn, email=address)
    if existing_id is None:
        check_references(conn, changes)
        custom = validate_custom(conn, changes.custom, require=require_custom)
        values: dict[str, Any] = {
            **changes.standard_values(),
            "email": address,
            "external_id": external_id,
            "custom": custom,
            "source_kind": source_kind,
            "source_ref": source_ref,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with conn.begin_nested():
                new_id = conn.execute(
                    insert(contacts).values(**values).returning(contacts.c.id)
                ).scalar_one()
        except IntegrityError:
            # A concurrent request created the same person first: update that one instead.
            raced = find_contact_id(conn, email=address, external_id=external_id)
            if raced is None:
                raise
            update_contact(conn, clock, raced, changes, email=address, external_id=external_id)
            return Upserted(raced, created=False)
        mark_dirty(conn, clock, [new_id])
        return Upserted(new_id, created=True)
    update_contact(conn, clock, existing_id, changes, email=address, external_id=external_id)
    return Upserted(existing_id, created=False)


def insert_new_contacts(
    conn: Connection, clock: Clock, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """Insert contacts already checked to be new (bulk ingestion) in one statement and
    queue them for a segment refresh; returns their ids in the order of ``rows``.

    Each row holds the same keys: contacts columns with values already validated, emails
    normalised. IntegrityError when an email or user id is taken (run inside a savepoint
    to recover).
    """
    if not rows:
        return []
    now = clock.now()
    statement = insert(contacts).returning(contacts.c.id, sort_by_parameter_order=True)
    result = conn.execute(statement, [{**r, "created_at": now, "updated_at": now} for r in rows])
    ids = [int(i) for i in result.scalars().all()]
    mark_dirty(conn, clock, ids)
    return ids


def update_contact(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    changes: ContactChanges,
    *,
    email: str | None = None,
    external_id: str | None = None,
) -> None:
    """Apply ``changes``; also fill email / user id when the contact lacks them.

    An email that already belongs to another contact is a Conflict when set explicitly.
    """
    row = conn.execute(
        select(contacts.c.email, contacts.c.external_id, contacts.c.custom).where(
            contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None)
        )
    ).first()
    if row is None:
        raise contact_not_found(conn, contact_id)
    check_references(conn, changes)
    values: dict[str, Any] = changes.standard_values()
    if changes.custom:
        custom = dict(row.custom or {})
        custom.update(validate_custom(conn, changes.custom))
        values["custom"] = {k: v for k, v in custom.items() if v is not None}
    if email and row.email is None:
        address = normalise_email(email)
        if find_contact_id(conn, email=address) in (None, contact_id):
            values["email"] = address
    if (
        external_id
        and row.external_id is None
        and find_contact_id(conn, external_id=external_id) in (None, contact_id)
    ):
        values["external_id"] = external_id
    if not values:
        return
    values["updated_at"] = clock.now()
    try:
        with conn.begin_nested():
            conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))
            mark_dirty(conn, clock, [contact_id])
    except IntegrityError:
        raise Conflict("another contact already has that email or user id") from None


def get_contact(conn: Connection, contact_id: int) -> Contact:
    """The live contact; NotFound for unknown ids and for merged-away ones."""
    row = (
        conn.execute(
            select(contacts).where(contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None))
        )
        .mappings()
        .first()
    )
    if row is None:
        raise contact_not_found(conn, contact_id)
    tags = conn.execute(
        select(contact_tags.c.tag)
        .where(contact_tags.c.contact_id == contact_id)
        .order_by(contact_tags.c.tag)
    ).scalars()
    return Contact.model_validate({**row, "tags": list(tags)})


def touch_last_seen(conn: Connection, seen: dict[int, Any]) -> None:
    """Advance last_seen_at for contacts that just did something (never moves it back), in
    one executemany; in id order, so two writers touching the same contacts lock them in the
    same order."""
    if not seen:
        return
    statement = (
        update(contacts)
        .where(
            contacts.c.id == bindparam("contact"),
            contacts.c.last_seen_at.is_(None) | (contacts.c.last_seen_at < bindparam("moment")),
        )
        .values(last_seen_at=bindparam("moment"))
    )
    conn.execute(statement, [{"contact": c, "moment": seen[c]} for c in sorted(seen)])


def contact_not_found(conn: Connection, contact_id: int) -> NotFound:
    """The NotFound to raise for ``contact_id``: a merged-away id names the contact that
    holds its history now (code "merged", details {"merged_into": id})."""
    merged_into = conn.execute(
        select(contacts.c.merged_into_id).where(contacts.c.id == contact_id)
    ).scalar_one_or_none()
    if merged_into is not None:
        live = live_contact_id(conn, contact_id) or merged_into
        return NotFound(
            f"contact {contact_id} was merged into contact {live}",
            code="merged",
            details={"merged_into": live},
        )
    return NotFound(f"no contact with id {contact_id}")


def require_live_contact(conn: Connection, contact_id: int) -> None:
    """NotFound (see ``contact_not_found``) unless ``contact_id`` is a live contact."""
    found = conn.execute(
        select(contacts.c.id).where(
            contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None)
        )
    ).first()
    if found is None:
        raise contact_not_found(conn, contact_id)


def check_references(conn: Connection, changes: ContactChanges) -> None:
    """Invalid (422) when the owner or account the changes point at does not exist."""
    values = changes.standard_values()
    owner_id = values.get("owner_id")
    if (
        owner_id is not None
        and not conn.execute(select(users.c.id).where(users.c.id == owner_id)).first()
    ):
        raise Invalid(
            f"owner_id {owner_id} is not a user",
            code="unknown_owner",
            details={"field": "owner_id"},
        )
    account_id = values.get("account_id")
    if (
        account_id is not None
        and not conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first()
    ):
        raise Invalid(
            f"account_id {account_id} is not an account",
            code="unknown_account",
            details={"field": "account_id"},
        )


def create_contact(
    conn: Connection,
    clock: Clock,
    *,
    email: str | None,
    external_id: str | None,
    changes: ContactChanges,
    source_kind: str = "api",
    source_ref: str | None = None,
    tags: Sequence[str] = (),
) -> int:
    """Create a new contact (with ``tags``) and return its id; never updates an existing one.

    Conflict (409) when the email or user id already identifies a contact (also an address
    absorbed by a merge); Invalid for a bad email, tag, custom value, owner or account.
    """
    for tag in tags:
        clean_tag(tag)  # refuse a bad tag before anything is written
    if not email and not external_id:
        raise Invalid("a contact needs an email or a user_id", code="no_identity")
    address = normalise_email(email) if email else None
    for kind, value, found in (
        ("email", address, find_contact_id(conn, email=address) if address else None),
        (
            "user_id",
            external_id,
            find_contact_id(conn, external_id=external_id) if external_id else None,
        ),
    ):
        if found is not None:
            raise Conflict(
                f"contact {found} already has {kind} {value}",
                code="contact_exists",
                details={"contact_id": found},
            )
    created = upsert_contact(
        conn,
        clock,
        email=address,
        external_id=external_id,
        changes=changes,
        source_kind=source_kind,
        source_ref=source_ref,
        require_custom=True,
    )
    add_tags(conn, clock, created.contact_id, tags)
    return created.contact_id


def edit_contact(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    changes: ContactChanges,
    *,
    new_email: str | None = None,
) -> Contact:
    """Apply a partial update (and an email change) and return the contact as stored now.

    NotFound for unknown / merged ids, Conflict when the new email is taken, Invalid for bad
    values. Call inside one transaction: on error nothing of the update remains.
    """
    require_live_contact(conn, contact_id)
    if new_email is not None:
        change_email(conn, clock, contact_id, new_email)
    update_contact(conn, clock, contact_id, changes)
    return get_contact(conn, contact_id)


def change_email(conn: Connection, clock: Clock, contact_id: int, email: str) -> None:
    """Give the contact a new address; Conflict (409) when another contact has it."""
    require_live_contact(conn, contact_id)
    address = normalise_email(email)
    owner = find_contact_id(conn, email=address)
    if owner not in (None, contact_id):
        raise Conflict(
            f"contact {owner} already has email {address}",
            code="contact_exists",
            details={"contact_id": owner},
        )
    try:
        with conn.begin_nested():
            conn.execute(
                update(contacts)
                .where(contacts.c.id == contact_id)
                .values(email=address, updated_at=clock.now())
            )
            mark_dirty(conn, clock, [contact_id])
    except IntegrityError:
        raise Conflict(f"another contact already has email {address}") from None
