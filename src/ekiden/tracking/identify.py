"""Who did it: resolving the user ids and anonymous ids of a batch to contacts.

All ids of a batch are looked up in two queries up front; only identify / group / alias calls
and ids never seen before cost further queries. Anonymous visitors never become contacts:
a contact is created only for a userId or an email.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.identity import add_identity, contacts_for_anonymous_ids, link_anonymous_id
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import (
    contacts_by_identifier,
    update_contact,
    upsert_contact,
)
from ekiden.contacts.tables import accounts, contacts
from ekiden.tracking.machine import device_class
from ekiden.tracking.segment import SegmentMessage
from ekiden.tracking.tables import events


def contacts_for_user_ids(conn: Connection, user_ids: Iterable[str]) -> dict[str, int]:
    """Live contacts of these userIds (also ids absorbed by a merge or an alias)."""
    return contacts_by_identifier(conn, "user_id", user_ids)


def contacts_for_emails(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    """Live contacts of these (normalised) emails, also emails absorbed by a merge."""
    return contacts_by_identifier(conn, "email", emails)


_LOCK_SPACE = 0x45_4B_00_00  # advisory lock numbers of identity buckets: 'EK' << 16 + bucket
_LOCK_BUCKETS = 4096


def lock_identities(conn: Connection, messages: Sequence[SegmentMessage]) -> None:
    """On PostgreSQL, take transaction-scoped advisory locks on the identities this batch may
    write (ids of identify / group / alias calls and of calls with a userId), in one
    statement and in ascending order. Two batches about the same people then run one after
    the other instead of deadlocking on contacts and identities rows. Ids are hashed into a
    fixed number of buckets so a batch holds at most that many locks."""
    if conn.dialect.name != "postgresql":
        return  # SQLite transactions already run one at a time (BEGIN IMMEDIATE)
    buckets: set[int] = set()
    for m in messages:
        if m.type in ("track", "page", "screen") and not m.userId:
            continue
        email = m.traits.get("email") if m.type == "identify" else None
        for key in (m.userId, m.anonymousId, m.previousId, email):
            if isinstance(key, str) and key:
                digest = hashlib.blake2b(key.strip().lower().encode(), digest_size=4).digest()
                buckets.add(int.from_bytes(digest) % _LOCK_BUCKETS)
    if buckets:
        numbers = [_LOCK_SPACE + b for b in sorted(buckets)]
        conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": numbers},
        )


class IdentityResolver:
    """Resolves the messages of one batch in order, remembering what earlier ones did."""

    def __init__(
        self,
        conn: Connection,
        clock: Clock,
        messages: Sequence[SegmentMessage],
        emails: Iterable[str] = (),
    ) -> None:
        self.conn = conn
        self.clock = clock
        user_ids = {m.userId for m in messages if m.userId}
        user_ids |= {m.previousId for m in messages if m.previousId}
        anonymous_ids = {m.anonymousId for m in messages if m.anonymousId}
        anonymous_ids |= {m.previousId for m in messages if m.previousId}
        self.users: dict[str, int] = contacts_for_user_ids(conn, user_ids) if user_ids else {}
        self.anonymous: dict[str, int] = contacts_for_anonymous_ids(conn, anonymous_ids)
        self.emails: dict[str, int] = contacts_for_emails(conn, emails)
        self.created = 0
        self.agents: dict[str, str] = {}  # anonymous id -> its latest user agent in the batch

    def apply(
        self,
        message: SegmentMessage,
        email: str | None,
        changes: ContactChanges | None,
        user_agent: str | None,
    ) -> int | None:
        """Apply the message's effect on contacts; return the contact it belongs to."""
        if user_agent and message.anonymousId:
            self.agents[message.anonymousId] = user_agent
        if message.type == "identify":
            contact_id = self._identify(message, email, changes)
        elif message.type == "alias":
            contact_id = self._alias(message, user_agent)
        else:
            contact_id = self._known(message)
            if message.type == "group" and message.groupId:
                account_id = upsert_account(self.conn, self.clock, message.groupId, message.traits)
                if contact_id is not None:
                    changes = ContactChanges(account_id=account_id)
                    update_contact(self.conn, self.clock, contact_id, changes)
        anonymous_id = message.anonymousId
        if contact_id is not None and anonymous_id is not None:
            self._link(anonymous_id, contact_id, user_agent)
        return contact_id

    def _link(self, anonymous_id: str, contact_id: int, user_agent: str | None) -> None:
        if self.anonymous.get(anonymous_id) != contact_id:
            # an identify call from a server knows no browser: take the browser's last one
            agent = (
                user_agent
                or self.agents.get(anonymous_id)
                or self.conn.execute(
                    select(events.c.user_agent)
                    .where(events.c.anonymous_id == anonymous_id, events.c.user_agent.is_not(None))
                    .order_by(events.c.id.desc())
                    .limit(1)
                ).scalar_one_or_none()
            )
            device = device_class(agent)
            link_anonymous_id(self.conn, self.clock, anonymous_id, contact_id, device=device)
            self.anonymous[anonymous_id] = contact_id

    def _known(self, message: SegmentMessage) -> int | None:
        """The contact of a behaviour call: by userId (created if new), else by the browser."""
        if message.userId:
            found = self.users.get(message.userId)
            return found if found is not None else self._for_new_user(message, None, None)
        if message.anonymousId:
            return self.anonymous.get(message.anonymousId)
        return None

    def _adoptable(self, contact_id: int, user_id: str | None, email: str | None) -> bool:
        """May the contact already linked to this browser take this userId / email?
        Not when it holds a different one: then it is another person on a shared device."""
        row = self.conn.execute(
            select(contacts.c.email, contacts.c.external_id).where(contacts.c.id == contact_id)
        ).one()
        return (user_id is None or row.external_id in (None, user_id)) and (
            email is None or row.email in (None, email)
        )

    def _for_new_user(
        self, message: SegmentMessage, email: str | None, changes: ContactChanges | None
    ) -> int:
        """Contact for a userId / email not known yet: the browser's contact when it can take
        them, else a new contact."""
        user_id = message.userId
        browser = self.anonymous.get(message.anonymousId) if message.anonymousId else None
        if browser is not None and self._adoptable(browser, user_id, email):
            update_contact(
                self.conn, self.clock, browser, changes or ContactChanges(),
                email=email, external_id=user_id,
            )  # fmt: skip
            contact_id = browser
        else:
            result = upsert_contact(
                self.conn, self.clock, email=email, external_id=user_id,
                changes=changes, source_kind="ingest",
            )  # fmt: skip
            contact_id = result.contact_id
            self.created += int(result.created)
        if user_id:
            self.users[user_id] = contact_id
        return contact_id

    def _identify(
        self, message: SegmentMessage, email: str | None, changes: ContactChanges | None
    ) -> int | None:
        if not message.userId and not email:
            # traits about an anonymous browser: only kept when it is already a contact's
            browser = self.anonymous.get(message.anonymousId) if message.anonymousId else None
            if browser is not None and changes is not None:
                update_contact(self.conn, self.clock, browser, changes)
            return browser
        target = self.users.get(message.userId) if message.userId else None
        if target is None and email:
            target = self.emails.get(email)
        if target is None:
            target = self._for_new_user(message, email, changes)
            if email:
                self.emails[email] = target
            return target
        update_contact(
            self.conn, self.clock, target, changes or ContactChanges(),
            email=email, external_id=message.userId,
        )  # fmt: skip
        if message.userId:
            self.users[message.userId] = target
        return target

    def _alias(self, message: SegmentMessage, user_agent: str | None) -> int:
        """previousId (an anonymous id or an older userId) is the same person as userId.
        Two contacts that are both known stay apart: merging them is a deliberate act."""
        previous = message.previousId or ""
        previous_user = self.users.get(previous)
        browser = self.anonymous.get(previous)
        target = self.users.get(message.userId or "")
        if target is None:
            source = previous_user if previous_user is not None else browser
            if source is not None and self._adoptable(source, message.userId, None):
                update_contact(
                    self.conn, self.clock, source, ContactChanges(), external_id=message.userId
                )
                target = source
                self.users[message.userId or ""] = source
            else:
                target = self._for_new_user(message, None, None)
        if previous_user is None or previous_user == target:
            self._link(previous, target, user_agent)
            if previous_user is None:
                add_identity(self.conn, self.clock, "user_id", previous, target)
                self.users[previous] = target
        return target


def upsert_account(conn: Connection, clock: Clock, group_id: str, traits: dict[str, Any]) -> int:
    """The account of a Segment groupId, created or updated from the group traits (name,
    website / domain, industry, employees). A domain another account holds is not moved."""
    domain = _domain(traits.get("domain") or traits.get("website"))
    values: dict[str, Any] = {}
    if isinstance(traits.get("name"), str) and traits["name"].strip():
        values["name"] = traits["name"].strip()
    if isinstance(traits.get("industry"), str):
        values["industry"] = traits["industry"]
    employees = traits.get("employees")
    if isinstance(employees, int | str) and str(employees).strip().isdigit():
        values["employees"] = int(str(employees).strip())
    now = clock.now()
    found = conn.execute(
        select(accounts.c.id).where(accounts.c.external_id == group_id)
    ).scalar_one_or_none()
    if found is None and domain:
        found = conn.execute(
            select(accounts.c.id).where(accounts.c.domain == domain)
        ).scalar_one_or_none()
        values["external_id"] = group_id
    elif domain:
        values["domain"] = domain
    if found is None:
        row = {"name": group_id, "custom": {}, "domain": domain, **values}
        row.update(external_id=group_id, created_at=now, updated_at=now)
        try:
            with conn.begin_nested():
                created = insert(accounts).values(**row).returning(accounts.c.id)
                return int(conn.execute(created).scalar_one())
        except IntegrityError:
            # created by a concurrent request: update that one below
            found = conn.execute(
                select(accounts.c.id).where(accounts.c.external_id == group_id)
            ).scalar_one()
    statement = update(accounts).where(accounts.c.id == found)
    try:
        with conn.begin_nested():
            conn.execute(statement.values(**values, updated_at=now))
    except IntegrityError:
        # the domain or groupId is another account's already: keep the other changes
        values.pop("domain", None)
        values.pop("external_id", None)
        conn.execute(statement.values(**values, updated_at=now))
    return int(found)


def _domain(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    text = text.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return text.removeprefix("www.") or None
