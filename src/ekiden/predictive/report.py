"""Plain-text tables of an evaluation and of a score calibration, for the CLI."""

from __future__ import annotations

from ekiden.predictive.calibration import Calibration, Interval
from ekiden.predictive.evaluation import Evaluation


def evaluation_lines(evaluation: Evaluation) -> list[str]:
    lines = [
        f"{evaluation.method}: {evaluation.rows:,} rows, {evaluation.positives:,} positive "
        f"({evaluation.positives / max(1, evaluation.rows):.1%})",
        f"ROC-AUC {evaluation.auc:.4f}"
        + (
            " (folds: " + ", ".join(f"{a:.4f}" for a in evaluation.fold_aucs) + ")"
            if evaluation.fold_aucs
            else ""
        ),
        f"Brier score {evaluation.brier:.4f}",
        "",
        "lift by decile (highest probability first)",
        f"{'decile':>6}  {'rows':>7}  {'positive':>8}  {'rate':>6}  {'lift':>5}  {'captured':>8}",
    ]
    lines += [
        f"{d.decile:>6}  {d.rows:>7,}  {d.positives:>8,}  {d.rate:>6.1%}  {d.lift:>5.2f}  "
        f"{d.captured:>8.1%}"
        for d in evaluation.deciles
    ]
    lines += [
        "",
        "calibration (predicted vs observed)",
        f"{'probability':>11}  {'rows':>7}  {'predicted':>9}  {'observed':>8}",
    ]
    lines += [
        f"{b.low:>4.1f}–{b.high:<4.1f}   {b.rows:>7,}  {b.mean_predicted:>9.1%}  "
        f"{b.observed_rate:>8.1%}"
        for b in evaluation.calibration
    ]
    return lines


def _share(interval: Interval) -> str:
    if interval.value is None or interval.low is None or interval.high is None:
        return "-"
    return f"{interval.value:.1%} [{interval.low:.1%}, {interval.high:.1%}]"


def _ratio(interval: Interval) -> str:
    if interval.value is None or interval.low is None or interval.high is None:
        return "-"
    return f"{interval.value:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def calibration_lines(result: Calibration) -> list[str]:
    lines = [
        f"{result.contacts:,} contacts with a known outcome, {result.converted:,} converted",
        "",
        "rules: conversion when triggered vs not, lift with 95 % interval, points",
        f"{'rule':<24} {'triggered':>9}  {'rate triggered':<22} {'rate others':<22} "
        f"{'lift':<20} {'points':>6} {'suggested':>9}",
    ]
    for rule in result.rules:
        suggested = "-" if rule.suggested_points is None else f"{rule.suggested_points:g}"
        lines.append(
            f"{rule.key[:24]:<24} {rule.triggered:>9,}  {_share(rule.rate_triggered):<22} "
            f"{_share(rule.rate_others):<22} {_ratio(rule.lift):<20} {rule.points:>6g} "
            f"{suggested:>9}"
        )
    lines += ["", "conversion by score band", f"{'score':<16} {'contacts':>8}  rate"]
    for band in result.bands:
        label = f"{band.low:g}–{band.high:g}" if band.high is not None else f"≥ {band.low:g}"
        lines.append(f"{label:<16} {band.contacts:>8,}  {_share(band.rate)}")
    return lines
