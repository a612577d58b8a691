"""``ekiden emails topics …``: subscription topics from the shell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection

from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError
from ekiden.messaging import store, topics
from ekiden.messaging.models import EmailTemplateChanges, Localized, TopicChanges, TopicIn

emails_app = typer.Typer(no_args_is_help=True, help="Email templates and subscription topics.")
topics_app = typer.Typer(
    no_args_is_help=True, help="Subscription topics (newsletter, seminar invitations, …)."
)
emails_app.add_typer(topics_app, name="topics")
err = Console(stderr=True)
T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(1)


def _run(work: Callable[[Connection], T], *, write: bool = True) -> T:
    """Run ``work`` in one transaction; a refused request prints the reason and exits 1."""
    settings = load_settings()
    engine = create_db_engine(settings.database_url)
    try:
        with engine.begin() if write else engine.connect() as conn:
            return work(conn)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(problems) from None
    finally:
        engine.dispose()  # now, not whenever the garbage collector finds it


@topics_app.command("list")
def list_command(
    archived: Annotated[bool, typer.Option(help="List archived topics instead.")] = False,
) -> None:
    """List topics in page order with their default and templates."""
    found = _run(lambda conn: topics.list_topics(conn, archived=archived), write=False)
    table = Table("key", "name (ja)", "name (en)", "default", "position", "templates")
    for t in found:
        default = "subscribed" if t.default_subscribed else "not subscribed"
        table.add_row(t.key, t.name.ja, t.name.en, default, str(t.position), ", ".join(t.templates))
    Console().print(table)


@topics_app.command("create")
def create_command(
    key: Annotated[str, typer.Argument(help="Identifier, e.g. newsletter.")],
    name_ja: Annotated[str, typer.Option("--name-ja", help="Japanese name, e.g. ニュースレター.")],
    name_en: Annotated[str, typer.Option("--name-en", help="English name, e.g. Newsletter.")],
    description_ja: Annotated[str, typer.Option("--description-ja")] = "",
    description_en: Annotated[str, typer.Option("--description-en")] = "",
    default_subscribed: Annotated[
        bool,
        typer.Option(
            "--default-subscribed/--default-unsubscribed",
            help="Whether contacts who never chose get this topic's email.",
        ),
    ] = True,
    position: Annotated[int, typer.Option(help="Order on the preference page.")] = 0,
) -> None:
    """Create a topic."""
    clock = SystemClock()

    def work(conn: Connection) -> None:
        data = TopicIn(
            key=key,
            name=Localized(ja=name_ja, en=name_en),
            description=Localized(ja=description_ja, en=description_en),
            default_subscribed=default_subscribed,
            position=position,
        )
        topics.create_topic(conn, clock, data)

    _run(work)
    err.print(f"created topic {key}")


@topics_app.command("update")
def update_command(
    key: Annotated[str, typer.Argument(help="The topic's key.")],
    name_ja: Annotated[str | None, typer.Option("--name-ja")] = None,
    name_en: Annotated[str | None, typer.Option("--name-en")] = None,
    description_ja: Annotated[str | None, typer.Option("--description-ja")] = None,
    description_en: Annotated[str | None, typer.Option("--description-en")] = None,
    default_subscribed: Annotated[
        bool | None, typer.Option("--default-subscribed/--default-unsubscribed")
    ] = None,
    position: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Change a topic's names, descriptions, default or position."""
    clock = SystemClock()

    def work(conn: Connection) -> None:
        current = topics.get_topic(conn, key)
        values: dict[str, object] = {}
        if name_ja is not None or name_en is not None:
            values["name"] = Localized(
                ja=current.name.ja if name_ja is None else name_ja,
                en=current.name.en if name_en is None else name_en,
            )
        if description_ja is not None or description_en is not None:
            values["description"] = Localized(
                ja=current.description.ja if description_ja is None else description_ja,
                en=current.description.en if description_en is None else description_en,
            )
        if default_subscribed is not None:
            values["default_subscribed"] = default_subscribed
        if position is not None:
            values["position"] = position
        topics.update_topic(conn, clock, key, TopicChanges.model_validate(values))

    _run(work)
    err.print(f"updated topic {key}")


@topics_app.command("archive")
def archive_command(key: Annotated[str, typer.Argument(help="The topic's key.")]) -> None:
    """Archive a topic (refused while live templates belong to it)."""
    _run(lambda conn: topics.archive_topic(conn, SystemClock(), key))
    err.print(f"archived topic {key}")


@topics_app.command("assign")
def assign_command(
    template: Annotated[str, typer.Argument(help="An email template's key.")],
    topic: Annotated[str, typer.Argument(help="A topic's key, or - for no topic.")],
) -> None:
    """Put a marketing template in a topic (``-``: in none)."""
    changes = EmailTemplateChanges.model_validate({"topic": None if topic == "-" else topic})
    _run(lambda conn: store.update_template(conn, SystemClock(), template, changes))
    err.print(f"template {template}: topic {topic}")


@topics_app.command("choose")
def choose_command(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
    topic: Annotated[str, typer.Argument(help="A topic's key.")],
    subscribed: Annotated[
        bool, typer.Option("--subscribed/--unsubscribed", help="The contact's choice.")
    ],
    reference: Annotated[
        str, typer.Option(help="Evidence of the request, e.g. a support ticket number.")
    ] = "",
) -> None:
    """Record a contact's choice for one topic (e.g. asked by phone), with evidence."""

    def work(conn: Connection) -> list[str]:
        return topics.choose_topics(
            conn,
            SystemClock(),
            contact_id,
            {topic: subscribed},
            source="cli",
            source_ref=reference or None,
        )

    changed = _run(work)
    state = "subscribed to" if subscribed else "unsubscribed from"
    err.print(f"contact {contact_id} {state} {topic}" + ("" if changed else " (unchanged)"))
