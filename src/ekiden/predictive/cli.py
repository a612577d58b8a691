"""``ekiden model …``: train the predictive model, report on it, evaluate a CSV, calibrate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError
from ekiden.predictive import service
from ekiden.predictive.csvdata import read_labelled_csv
from ekiden.predictive.evaluation import cross_validate, evaluation_from_dict
from ekiden.predictive.outcomes import DEFAULT_LOST, DEFAULT_OUTCOME, OutcomeSpec
from ekiden.predictive.report import calibration_lines, evaluation_lines
from ekiden.predictive.training import MIN_EACH, score_open_leads, train

model_app = typer.Typer(no_args_is_help=True, help="Predictive lead scoring and calibration.")
err = Console(stderr=True, highlight=False)

OutcomeOption = Annotated[
    str,
    typer.Option(help="Converted contacts: a filter as JSON."),
]
LostOption = Annotated[
    str,
    typer.Option(help="Not converted contacts: a filter as JSON; '' for none."),
]
WindowOption = Annotated[
    int,
    typer.Option(
        min=1, help="Contacts known this many days without converting count as not converted."
    ),
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _spec(outcome: str, lost: str, window_days: int) -> OutcomeSpec:
    def parse(text: str, name: str) -> dict[str, Any]:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _fail(f"--{name}: not valid JSON") from None
        if not isinstance(value, dict):
            raise _fail(f"--{name}: must be one filter object")
        return value

    return OutcomeSpec(
        outcome=parse(outcome, "outcome"),
        lost=parse(lost, "lost") if lost.strip() else None,
        window_days=window_days,
    )


def _print(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


@model_app.command("train")
def train_command(
    outcome: OutcomeOption = orjson.dumps(DEFAULT_OUTCOME).decode(),
    lost: LostOption = orjson.dumps(DEFAULT_LOST).decode(),
    window_days: WindowOption = 90,
    min_each: Annotated[int, typer.Option(min=10, help="Contacts needed of each outcome.")] = (
        MIN_EACH
    ),
) -> None:
    """Train a new model version on contacts with known outcomes; score every open lead."""
    settings = load_settings()
    spec = _spec(outcome, lost, window_days)
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            done = train(conn, SystemClock(), spec, settings.zone, min_each=min_each)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    _print(
        [
            f"model version {done.version}: {done.positives:,} converted, "
            f"{done.negatives:,} not converted; {done.scored:,} open leads scored",
            "",
            *evaluation_lines(done.evaluation),
        ]
    )


@model_app.command("score")
def score_command() -> None:
    """Score every open lead again with the newest model (after new behaviour)."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            scored = score_open_leads(conn, SystemClock(), settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(f"scored {scored:,} open leads")


@model_app.command("report")
def report_command(
    version: Annotated[int | None, typer.Option(help="A model version (default: newest).")] = None,
) -> None:
    """The hold-out evaluation and strongest features of a trained model."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            found = service.get_model(conn, version)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    evaluation = evaluation_from_dict(found.metrics)
    importance = found.metrics.get("importance", {})
    _print(
        [
            f"model version {found.version}, trained {found.trained_at.astimezone(settings.zone)}"
            f": {found.positives:,} converted, {found.negatives:,} not converted",
            f"outcome: {orjson.dumps(found.outcome).decode()}",
            "",
            *evaluation_lines(evaluation),
            "",
            "strongest features (largest |coefficient|)",
            *[f"  {name}: {weight:.3f}" for name, weight in list(importance.items())[:15]],
        ]
    )


@model_app.command("evaluate-csv")
def evaluate_csv_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV with a header.")],
    target: Annotated[str, typer.Option(help="The 0/1 outcome column.")],
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="A column to leave out (repeatable; NAME* for a prefix)."),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
) -> None:
    """Stratified k-fold evaluation of the predictive model on any CSV: AUC, lift, calibration."""
    try:
        data = read_labelled_csv(file, target=target, exclude=exclude)
        evaluation = cross_validate(data.table, data.labels, folds=folds)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if data.excluded:
        err.print(f"left out: {', '.join(data.excluded)}")
    _print(evaluation_lines(evaluation))


@model_app.command("calibrate")
def calibrate_command(
    key: Annotated[str, typer.Argument(help="The score's key, e.g. behaviour.")],
    outcome: OutcomeOption = orjson.dumps(DEFAULT_OUTCOME).decode(),
    lost: LostOption = orjson.dumps(DEFAULT_LOST).decode(),
    window_days: WindowOption = 90,
    bands: Annotated[
        str, typer.Option(help="Lower edges of score bands, e.g. 0,10,30 (default: quintiles).")
    ] = "",
) -> None:
    """How well a rule score's rules predict conversion, with suggested points."""
    from ekiden.predictive.score_calibration import score_calibration

    settings = load_settings()
    spec = _spec(outcome, lost, window_days)
    try:
        edges = [float(p) for p in bands.split(",") if p.strip()] or None
    except ValueError:
        raise _fail("--bands: use numbers separated by commas, e.g. 0,10,30") from None
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            result = score_calibration(conn, SystemClock(), key, spec, settings.zone, bands=edges)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    _print(calibration_lines(result))
