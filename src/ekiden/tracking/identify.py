"""Who did it: resolving the user ids and anonymous ids of a batch to contacts.

All ids of a batch are looked up in two queries up front; only identify / group / alias calls
and ids never seen before cost further queries. Anonymous visitors never become contacts:
a contact is created only for a userId or an email.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.customfields import CustomFieldDefinition, coerce_value
from ekiden.contacts.identity import (
    ALL_IDENTITIES,
    add_identity,
    contacts_for_anonymous_ids,
    identity_lock_key,
    link_anonymous_id,
    link_anonymous_ids,
    lock_identity_keys,
)
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import (
    contacts_by_identifier,
    insert_new_contacts,
    update_contact,
    upsert_contact,
)
from ekiden.contacts.tables import accounts, contacts
from ekiden.tracking.machine import device_class
from ekiden.tracking.segment import TRAIT_FIELDS, SegmentMessage
from ekiden.tracking.tables import events


def contacts_for_user_ids(conn: Connection, values: Iterable[str]) -> dict[str, int]:
    """Live contacts of these userIds (also ids absorbed by a merge or an alias)."""
    return contacts_by_identifier(conn, "user_id", values)


def contacts_for_emails(conn: Connection, values: Iterable[str]) -> dict[str, int]:
    """Live contacts of these (normalised) emails, also emails absorbed by a merge."""
    return contacts_by_identifier(conn, "email", values)


def ids_of(messages: Iterable[SegmentMessage]) -> tuple[set[str], set[str]]:
    """(user ids, anonymous ids) the messages name; a previousId may be either."""
    user_ids: set[str] = set()
    anonymous_ids: set[str] = set()
    for m in messages:
        if m.userId:
            user_ids.add(m.userId)
        if m.anonymousId:
            anonymous_ids.add(m.anonymousId)
        if m.previousId:
            user_ids.add(m.previousId)
            anonymous_ids.add(m.previousId)
    return user_ids, anonymous_ids


# contact columns an identify call's traits can set (segment.TRAIT_FIELDS); none has a default
_TRAIT_COLUMNS = frozenset(TRAIT_FIELDS.values())

# A batch needing more identity locks than this takes the whole-ingest lock alone instead.
_MOST_LOCKS = 256


def lock_identities(
    conn: Connection, messages: Sequence[SegmentMessage], known: IdentityResolver | None = None
) -> set[str]:
    """On PostgreSQL, take transaction-scoped advisory locks on the identities this batch may
    write, in ascending order; returns the ids locked (all the messages' ids when the
    whole-ingest lock was taken). Two batches about the same people then run one after the
    other instead of deadlocking on contacts and identities rows, and a person is created
    once. Whatever may be written must be read after this call.

    Identify / group / alias calls may write all their ids. A track / page / screen call
    with a userId writes only when ``known`` (what the database said) does not show that
    userId's contact with this browser linked to it; without ``known`` it counts as writing.
    The browsers of calls that only read are locked shared: an identify linking one of them
    elsewhere then commits either before this batch reads it or after this batch's events are
    stored (and attributes them), never in between.
    """
    if conn.dialect.name != "postgresql":
        return set()  # SQLite transactions already run one at a time (BEGIN IMMEDIATE)
    keys: set[str] = set()
    read_only_browsers: set[str] = set()
    for m in messages:
        if m.type in ("track", "page", "screen"):
            if not m.userId:
                if m.anonymousId:
                    read_only_browsers.add(m.anonymousId)
                continue
            if known is not None:
                contact_id = known.users.get(m.userId)
                if contact_id is not None and (
                    not m.anonymousId or known.anonymous.get(m.anonymousId) == contact_id
                ):
                    if m.anonymousId:
                        read_only_browsers.add(m.anonymousId)
                    continue  # only reads: the contact and its browser are linked already
        email = m.traits.get("email") if m.type == "identify" else None
        for key in (m.userId, m.anonymousId, m.previousId, email):
            if isinstance(key, str) and key:
                keys.add(key)
    exclusive = {identity_lock_key(k) for k in keys}
    shared = {identity_lock_key(k) for k in read_only_browsers} - exclusive
    if len(exclusive | shared) > _MOST_LOCKS:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ALL_IDENTITIES})
        user_ids, anonymous_ids = ids_of(messages)
        return keys | user_ids | anonymous_ids
    lock_identity_keys(conn, exclusive, shared)
    return keys


@dataclass(frozen=True)
class Call:
    """One checked message as the resolver sees it: the normalised email and the contact
    changes of an identify call, and the user agent that stands for the message."""

    message: SegmentMessage
    email: str | None = None
    changes: ContactChanges | None = None
    user_agent: str | None = None


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
        self.users: dict[str, int] = {}
        self.anonymous: dict[str, int] = {}
        self.emails: dict[str, int] = {}
        self.created = 0
        self.agents: dict[str, str] = {}  # anonymous id -> its latest user agent in the batch
        self._made: dict[int, int] = {}  # position of a call -> contact created for it in bulk
        user_ids, anonymous_ids = ids_of(messages)
        self.read(user_ids, anonymous_ids, emails)

    def read(
        self, user_ids: Iterable[str], anonymous_ids: Iterable[str], emails: Iterable[str]
    ) -> None:
        """Look these ids up (again): what the database says now replaces what was known."""
        for known, ids, look_up in (
            (self.users, set(user_ids), contacts_for_user_ids),
            (self.anonymous, set(anonymous_ids), contacts_for_anonymous_ids),
            (self.emails, set(emails), contacts_for_emails),
        ):
            if ids:
                for value in ids:
                    known.pop(value, None)
                known.update(look_up(self.conn, ids))

    def create_new_people(
        self, calls: Sequence[Call], fields: Mapping[str, CustomFieldDefinition]
    ) -> int:
        """Create up front, in a few statements, the contacts that the calls of this batch
        introduce, with their browsers linked and anonymous histories attributed.

        Only a call whose outcome cannot depend on an earlier message of the batch takes
        part: an identify with a userId and / or email that no contact has (or a track /
        page / screen call with such a userId), from a browser no contact has, none of
        these ids appearing in an earlier message that may write (one with a userId, an
        email or a previousId). ``apply`` then only records the result. Every other call
        goes through ``apply`` one by one as before. When the database refuses the rows
        (another writer created one of these people meanwhile) nothing of this step
        remains and every call takes the one-by-one path. Returns how many contacts were
        created."""
        touched: set[str] = set()
        agents: dict[str, str] = {}
        chosen: list[tuple[int, Call, str | None]] = []  # (position, call, user agent)
        for position, call in enumerate(calls):
            m = call.message
            if call.user_agent and m.anonymousId:
                agents[m.anonymousId] = call.user_agent
            email = call.email if m.type == "identify" else None
            keys = [k for k in (m.userId, m.previousId, email, m.anonymousId) if k]
            if self._qualifies(call, fields) and not touched.intersection(keys):
                anonymous_id = m.anonymousId
                agent = call.user_agent or (agents.get(anonymous_id) if anonymous_id else None)
                chosen.append((position, call, agent))
            if m.userId or email or m.previousId:
                touched.update(keys)
        if not chosen:
            return 0
        rows = [self._contact_row(call, fields) for _, call, _ in chosen]
        links: list[tuple[str, int, str | None]] = []
        try:
            with self.conn.begin_nested():
                ids = insert_new_contacts(self.conn, self.clock, rows)
                for (_, call, agent), contact_id in zip(chosen, ids, strict=True):
                    anonymous_id = call.message.anonymousId
                    if anonymous_id is not None:
                        links.append((anonymous_id, contact_id, agent))
                devices = [
                    (a, c, device_class(agent or self._last_agent(a))) for a, c, agent in links
                ]
                link_anonymous_ids(self.conn, self.clock, devices)
        except IntegrityError:
            return 0  # someone else holds one of these ids now: the careful path decides
        self._made = {position: i for (position, _, _), i in zip(chosen, ids, strict=True)}
        return len(ids)

    def _qualifies(self, call: Call, fields: Mapping[str, CustomFieldDefinition]) -> bool:
        m = call.message
        if m.type in ("track", "page", "screen"):
            # a behaviour call with a userId no contact has creates that contact
            return (
                bool(m.userId)
                and m.userId not in self.users
                and not (m.anonymousId and m.anonymousId in self.anonymous)
            )
        if m.type != "identify" or not (m.userId or call.email):
            return False
        if (m.userId and m.userId in self.users) or (call.email and call.email in self.emails):
            return False
        if m.anonymousId and m.anonymousId in self.anonymous:
            return False  # the browser's contact may adopt these ids: decided one by one
        changes = call.changes or ContactChanges()
        if set(changes.standard_values()) - _TRAIT_COLUMNS:
            return False
        return all(key in fields for key in changes.custom)

    def _contact_row(
        self, call: Call, fields: Mapping[str, CustomFieldDefinition]
    ) -> dict[str, Any]:
        """The contacts row ``upsert_contact`` would insert for this call."""
        changes = (call.changes if call.message.type == "identify" else None) or ContactChanges()
        standard = changes.standard_values()
        row: dict[str, Any] = {name: standard.get(name) for name in sorted(_TRAIT_COLUMNS)}
        row.update(
            email=call.email if call.message.type == "identify" else None,
            external_id=call.message.userId,
            custom={k: coerce_value(fields[k], v) for k, v in changes.custom.items()},
            source_kind="ingest",
            source_ref=None,
        )
        return row

    def _last_agent(self, anonymous_id: str) -> str | None:
        """The browser's latest user agent stored (an identify from a server knows none)."""
        return self.conn.execute(
            select(events.c.user_agent)
            .where(events.c.anonymous_id == anonymous_id, events.c.user_agent.is_not(None))
            .order_by(events.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()

    def apply(
        self,
        message: SegmentMessage,
        email: str | None,
        changes: ContactChanges | None,
        user_agent: str | None,
        *,
        position: int | None = None,
    ) -> int | None:
        """Apply the message's effect on contacts; return the contact it belongs to.
        ``position`` is the call's place in what ``create_new_people`` was given."""
        if user_agent and message.anonymousId:
            self.agents[message.anonymousId] = user_agent
        made = self._made.pop(position, None) if position is not None else None
        if made is not None:
            # created in bulk: only remember what the one-by-one path would have
            if message.userId:
                self.users[message.userId] = made
            if email:
                self.emails[email] = made
            if message.anonymousId:
                self.anonymous[message.anonymousId] = made
            self.created += 1
            return made
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
            agent = user_agent or self.agents.get(anonymous_id) or self._last_agent(anonymous_id)
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
