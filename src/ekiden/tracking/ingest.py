"""Segment-compatible ingestion: check a whole request first, then write it in one transaction.

``ingest_messages`` is the one entry point: the HTTP Tracking API (``/v1/*``), the browser
snippet and the pixel all hand it Segment-shaped messages. Either every message of a call is
stored or, when one is invalid, none is (the caller's transaction rolls back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.customfields import CustomFieldDefinition, coerce_value, list_fields
from ekiden.contacts.emails import normalise_email
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import touch_last_seen
from ekiden.db.lists import one_of
from ekiden.errors import EkidenError, Invalid, Malformed, TooLarge
from ekiden.tracking.dwell import DWELL_EVENT, dwell_details
from ekiden.tracking.events import EVENT_SOURCES, NewEvent, record_events
from ekiden.tracking.identify import Call, IdentityResolver, ids_of, lock_identities
from ekiden.tracking.machine import machine_reason
from ekiden.tracking.segment import SegmentMessage, page_details, split_traits
from ekiden.tracking.tables import events

BEHAVIOUR_TYPES = ("track", "page", "screen")


@dataclass(frozen=True)
class IngestResult:
    """What one call did. ``duplicates`` were already stored (same messageId) and skipped."""

    received: int
    stored: int
    duplicates: int
    contacts_created: int


@dataclass(frozen=True)
class Envelope:
    """A request body unwrapped: the messages, and the batch-level write key and sentAt."""

    messages: list[Any]
    write_key: str | None
    sent_at: datetime | None


@dataclass
class Prepared:
    """A message that passed every check, with its identify traits already converted."""

    index: int
    raw: Mapping[str, Any]
    message: SegmentMessage
    email: str | None = None
    changes: ContactChanges | None = None
    user_agent: str | None = None
    event: NewEvent | None = None  # built by check_messages, its contact set when stored


@dataclass(frozen=True)
class Checked:
    """A request's messages that passed every check, each with its event built (the
    contact still unknown), and the custom field definitions the check used."""

    items: list[Prepared]
    fields: dict[str, CustomFieldDefinition]


def read_envelope(body: Any, *, kind: str) -> Envelope:
    """Unwrap a decoded JSON body posted to ``/v1/{kind}``.

    A batch body is ``{"batch": [...], "sentAt"?, "writeKey"?, "context"?}``; batch-level
    context is merged under each message's own. Any other body is the message itself and
    its type is the endpoint's. Raises Malformed / Invalid for the wrong shape.
    """
    if not isinstance(body, dict):
        raise Malformed("the request body must be a JSON object")
    write_key = body.get("writeKey")
    write_key = write_key if isinstance(write_key, str) and write_key else None
    sent_at = _parse_time(body.get("sentAt"), "sentAt")
    if kind != "batch":
        message = {k: v for k, v in body.items() if k != "writeKey"}
        message["type"] = kind
        return Envelope([message], write_key, None)
    items = body.get("batch")
    if not isinstance(items, list):
        raise Invalid("a batch body needs a `batch` list of messages", code="invalid_batch")
    shared = body.get("context")
    if isinstance(shared, dict) and shared:
        items = [
            {**item, "context": {**shared, **(item.get("context") or {})}}
            if isinstance(item, dict)
            else item
            for item in items
        ]
    return Envelope(items, write_key, sent_at)


def _parse_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f"{name} is not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise Invalid(f"{name} must include a time zone: {value!r}")
    return moment


def _at(index: int, exc: EkidenError) -> EkidenError:
    """The same error, its message prefixed with the position of the offending event."""
    return type(exc)(f"event {index}: {exc.message}", code=exc.code, details={"index": index})


def prepare_messages(
    conn: Connection,
    settings: Settings,
    messages: Sequence[Any],
    fields: dict[str, CustomFieldDefinition] | None = None,
) -> list[Prepared]:
    """Check every message (size, shape, ids, email and custom traits) before anything is
    written; raise the first problem naming the event's index. ``fields``, when given, is
    filled with the custom field definitions if the check needed them."""
    prepared: list[Prepared] = []
    defined: dict[str, Any] | None = None
    for index, raw in enumerate(messages):
        if not isinstance(raw, dict):
            raise Malformed(f"event {index}: a message must be a JSON object")
        size = len(orjson.dumps(raw))
        if size > settings.max_event_bytes:
            raise TooLarge(
                f"event {index} is {size:,} bytes; one event may be at most "
                f"{settings.max_event_bytes:,} bytes (the per-event limit)",
                code="event_too_large",
                details={"index": index, "limit": settings.max_event_bytes},
            )
        try:
            message = SegmentMessage.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Invalid(
                f"event {index}: {where}: {first['msg']}", details={"index": index}
            ) from None
        problem = message.problem()
        if problem is not None:
            raise Invalid(
                f"event {index} ({message.type}): {problem}",
                code="no_identity" if "userId" in problem else "invalid",
                details={"index": index},
            )
        item = Prepared(index, raw, message)
        if message.type == "identify" and message.traits:
            if defined is None:
                defined = {f.key: f for f in list_fields(conn)}
                if fields is not None:
                    fields.update(defined)
            _convert_traits(item, defined)
        prepared.append(item)
    return prepared


def _convert_traits(item: Prepared, defined: Mapping[str, Any]) -> None:
    email, fields, other = split_traits(item.message.traits)
    try:
        item.email = normalise_email(email) if email else None
    except EkidenError as exc:
        raise _at(item.index, exc) from None
    custom: dict[str, Any] = {}
    for key, value in other.items():
        field = defined.get(key)
        if field is None:
            continue  # kept only in the identify event's properties
        try:
            custom[key] = coerce_value(field, value)
        except ValueError as exc:
            raise Invalid(
                f"event {item.index}: traits.{key} {exc}",
                code="invalid_custom_field",
                details={"index": item.index},
            ) from None
    try:
        item.changes = ContactChanges(**fields, custom=custom)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(
            f"event {item.index}: traits.{first['loc'][0]}: {first['msg']}",
            details={"index": item.index},
        ) from None


def is_retryable(exc: DBAPIError) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction was rolled back and
    running ``ingest_messages`` again in a new one is safe (and the right answer)."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def _stored_message_ids(conn: Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(
            conn.execute(
                select(events.c.message_id).where(one_of(conn, events.c.message_id, chunk))
            )
            .scalars()
            .all()
        )
    return found


def check_messages(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    messages: Sequence[Any],
    *,
    request_ip: str | None,
    source: str = "api",
    sent_at: datetime | None = None,
    request_user_agent: str | None = None,
) -> Checked:
    """Everything ``ingest_messages`` does before it writes: check every message and build
    its event. Only reads (custom field definitions), so a server can run it on a reading
    connection before it opens the writing transaction. Raises EkidenError naming the first
    bad message."""
    if source not in EVENT_SOURCES:
        raise ValueError(f"unknown event source {source}")
    fields: dict[str, CustomFieldDefinition] = {}
    prepared = prepare_messages(conn, settings, messages, fields)
    received = clock.now()
    for item in prepared:
        item.user_agent = item.message.context.userAgent or request_user_agent
        item.event = _event(item, None, received, sent_at, request_ip, source, item.user_agent)
    return Checked(prepared, fields)


def ingest_messages(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    messages: Sequence[Any],
    *,
    request_ip: str | None,
    source: str = "api",
    sent_at: datetime | None = None,
    request_user_agent: str | None = None,
    checked: Checked | None = None,
) -> IngestResult:
    """Validate all ``messages`` (Segment-shaped dicts), then store them as events and apply
    identify / group / alias to contacts, accounts and identities.

    ``request_ip`` stands in for a message without ``context.ip``; ``request_user_agent``
    for one without ``context.userAgent`` (pass it only when the request came from the
    visitor's own browser). A message whose messageId is already stored is skipped entirely,
    traits included. ``checked`` is ``check_messages``' result for the same arguments when
    the caller ran it already. Raises EkidenError (nothing must then be committed by the
    caller).
    """
    if checked is None:
        checked = check_messages(
            conn, clock, settings, messages, request_ip=request_ip, source=source,
            sent_at=sent_at, request_user_agent=request_user_agent,
        )  # fmt: skip
    prepared = checked.items
    everyone = [p.message for p in prepared]
    emails = [p.email for p in prepared if p.email]
    if conn.dialect.name == "postgresql":
        # Read first what decides whether a track / page / screen call with a userId
        # writes, lock what may be written, then read everything else (the locked ids
        # again: another batch may have just written them).
        users = [m for m in everyone if m.userId and m.type in BEHAVIOUR_TYPES]
        resolver = IdentityResolver(conn, clock, users)
        settled_users, settled_browsers = ids_of(users)
        locked = lock_identities(conn, everyone, resolver)
        user_ids, anonymous_ids = ids_of(everyone)
        resolver.read(
            user_ids - (settled_users - locked), anonymous_ids - (settled_browsers - locked), emails
        )
    else:
        resolver = IdentityResolver(conn, clock, everyone, emails)
    ids = [p.message.messageId for p in prepared if p.message.messageId]
    stored = _stored_message_ids(conn, ids) if ids else set()
    fresh: list[Prepared] = []
    for item in prepared:
        message_id = item.message.messageId
        if message_id is not None:
            if message_id in stored:
                continue
            stored.add(message_id)  # a repeat inside the same batch is a duplicate too
        fresh.append(item)
    calls = [Call(p.message, p.email, p.changes, p.user_agent) for p in fresh]
    resolver.create_new_people(calls, checked.fields)
    new_events: list[NewEvent] = []
    for position, (item, call) in enumerate(zip(fresh, calls, strict=True)):
        try:
            contact_id = resolver.apply(
                call.message, call.email, call.changes, call.user_agent, position=position
            )
        except EkidenError as exc:
            raise _at(item.index, exc) from None
        assert item.event is not None  # built by check_messages
        item.event.contact_id = contact_id
        new_events.append(item.event)
    seen: dict[int, datetime] = {}
    for event in new_events:
        if event.contact_id is None and event.anonymous_id is not None:
            # the visitor became known later in this same batch
            event.contact_id = resolver.anonymous.get(event.anonymous_id)
        contact_id = event.contact_id
        if contact_id is None or event.machine or event.type == "identify":
            continue
        if contact_id not in seen or seen[contact_id] < event.occurred_at:
            seen[contact_id] = event.occurred_at
    record_events(conn, clock, new_events)
    if seen:
        touch_last_seen(conn, seen)
    return IngestResult(
        received=len(messages),
        stored=len(new_events),
        duplicates=len(prepared) - len(fresh),
        contacts_created=resolver.created,
    )


def _event(
    item: Prepared,
    contact_id: int | None,
    received: datetime,
    sent_at: datetime | None,
    request_ip: str | None,
    source: str,
    user_agent: str | None,
) -> NewEvent:
    message = item.message
    raw_context = item.raw.get("context")
    context = (
        {k: v for k, v in raw_context.items() if k not in ("ip", "userAgent")}
        if isinstance(raw_context, dict)
        else {}
    )
    if message.integrations:
        context["integrations"] = message.integrations
    if message.userId:
        context["userId"] = message.userId
    path: str | None = None
    dwell_ms: int | None = None
    kind: str = message.type
    name = message.name
    properties: dict[str, Any]
    if kind == "track":
        kind, name, properties = message.event or "track", None, message.properties
        if kind == DWELL_EVENT:
            path, dwell_ms = dwell_details(properties)
    elif kind == "page":
        path, properties = page_details(message)
    elif kind == "identify":
        properties = message.traits
    elif kind == "group":
        properties = {"groupId": message.groupId, "traits": message.traits}
    elif kind == "alias":
        properties = {"previousId": message.previousId}
    else:
        properties = message.properties
    if message.category and kind in ("page", "screen"):
        properties = {**properties, "category": message.category}
    reason = machine_reason(user_agent)
    return NewEvent(
        type=kind,
        name=name,
        occurred_at=message.occurred_at(received, sent_at),
        source=source,
        contact_id=contact_id,
        anonymous_id=message.anonymousId,
        path=path,
        dwell_ms=dwell_ms,
        properties=properties,
        context=context,
        ip=message.context.ip or request_ip,
        user_agent=user_agent,
        machine=reason is not None,
        machine_reason=reason,
        message_id=message.messageId,
    )
