"""The tabular learner: one logistic regression over numeric and categorical columns.

Numbers: missing values become the training median plus a "was missing" indicator, then
everything is standardised. Categories: one-hot, a missing value is its own category, rare
values (fewer than ``min_frequency`` rows) share one "infrequent" column and unseen values
score as none of the known ones. Both the contact-feature path and ``evaluate-csv`` go
through ``fit_model``, so the CSV validation measures the code that scores contacts.

Explanation: the contribution of a column to one prediction is the sum, over the model inputs
made from that column, of coefficient × (input value − its training mean). For a number that
is the coefficient times the standardised value; for a category it compares the contact's
category with the average mix. Contributions add up to the difference between the contact's
log-odds and the log-odds of an average contact, so they can be compared with each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

Value = float | int | str | None
MISSING = "(missing)"


@dataclass(frozen=True)
class Table:
    """Rows of named columns. A column whose present values are all numbers is numeric;
    any text value makes it categorical. ``None`` is a missing value."""

    columns: list[str]
    rows: list[list[Value]]

    def __post_init__(self) -> None:
        width = len(self.columns)
        for number, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"row {number} has {len(row)} values, expected {width}")


class Factor(NamedTuple):
    """One column's push on a prediction, in log-odds (positive raises the probability)."""

    feature: str
    value: Value
    contribution: float


@dataclass
class TabularModel:
    """A fitted model; picklable (only the server writes and reads the bytes)."""

    numeric: list[str]
    categorical: list[str]
    imputer: SimpleImputer | None
    scaler: StandardScaler | None
    encoders: list[OneHotEncoder]
    classifier: LogisticRegression
    origins: list[int] = field(default_factory=list)  # model input -> column index
    means: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    dropped: list[str] = field(default_factory=list)  # columns with no value at all

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical

    def probabilities(self, table: Table) -> NDArray[np.float64]:
        matrix = self._inputs(table)
        return np.asarray(self.classifier.predict_proba(matrix)[:, 1], dtype=np.float64)

    def explain(self, table: Table, *, top: int = 5) -> list[tuple[float, list[Factor]]]:
        """Per row: the probability and the ``top`` columns with the largest |contribution|."""
        matrix = self._inputs(table)
        probabilities = self.classifier.predict_proba(matrix)[:, 1]
        weighted = (matrix - self.means) * self.classifier.coef_[0]
        origins = np.asarray(self.origins)
        per_column = np.zeros((matrix.shape[0], len(self.columns)))
        np.add.at(per_column.T, origins, weighted.T)
        names = self.columns
        where = {name: i for i, name in enumerate(table.columns)}
        index = [where[name] for name in names]
        order = np.argsort(-np.abs(per_column), axis=1, kind="stable")[:, :top]
        answers: list[tuple[float, list[Factor]]] = []
        for row_number, row in enumerate(table.rows):
            strengths = per_column[row_number]
            factors = [
                Factor(names[k], row[index[k]], round(float(strengths[k]), 4))
                for k in order[row_number].tolist()
                if strengths[k] != 0
            ]
            answers.append((float(probabilities[row_number]), factors))
        return answers

    def coefficients(self) -> dict[str, float]:
        """Per column, the largest |coefficient| among its inputs (a rough importance)."""
        strength: dict[str, float] = {}
        for origin, coef in zip(self.origins, self.classifier.coef_[0], strict=True):
            name = self.columns[origin]
            strength[name] = max(strength.get(name, 0.0), abs(float(coef)))
        return dict(sorted(strength.items(), key=lambda item: -item[1]))

    def inputs(self, table: Table) -> NDArray[np.float64]:
        """The model's input matrix for ``table`` (the encoding fitted in training)."""
        return self._inputs(table)

    def _inputs(self, table: Table) -> NDArray[np.float64]:
        index = {name: i for i, name in enumerate(table.columns)}
        missing = [name for name in self.columns if name not in index]
        if missing:
            raise ValueError(f"columns missing from the data: {', '.join(missing)}")
        blocks: list[NDArray[np.float64]] = []
        if self.numeric:
            assert self.imputer is not None
            assert self.scaler is not None
            raw = _numbers(table.rows, [index[name] for name in self.numeric])
            blocks.append(self.scaler.transform(self.imputer.transform(raw)))
        for name, encoder in zip(self.categorical, self.encoders, strict=True):
            values = _categories(table.rows, index[name])
            blocks.append(np.asarray(encoder.transform(values), dtype=np.float64))
        return np.hstack(blocks) if blocks else np.zeros((len(table.rows), 0))


def fit_model(
    table: Table,
    labels: NDArray[np.int_] | list[int],
    *,
    regularisation: float = 1.0,
    min_frequency: int = 10,
) -> TabularModel:
    """Fit on ``table`` with 0/1 ``labels``. ``regularisation`` is scikit-learn's C (smaller
    is stronger). Raises ValueError when there are no usable columns or one class only."""
    target = np.asarray(labels, dtype=np.int_)
    if len(target) != len(table.rows):
        raise ValueError(f"{len(target)} labels for {len(table.rows)} rows")
    if len(set(target.tolist())) < 2:
        raise ValueError("both outcomes (0 and 1) must occur in the training data")
    numeric, categorical, dropped = _kinds(table)
    if not numeric and not categorical:
        raise ValueError("no column has any value")
    index = {name: i for i, name in enumerate(table.columns)}
    blocks: list[NDArray[np.float64]] = []
    origins: list[int] = []
    imputer = scaler = None
    if numeric:
        raw = _numbers(table.rows, [index[name] for name in numeric])
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        scaler = StandardScaler()
        blocks.append(scaler.fit_transform(imputer.fit_transform(raw)))
        origins += list(range(len(numeric)))
        if imputer.indicator_ is not None:
            origins += [int(k) for k in imputer.indicator_.features_]
    encoders: list[OneHotEncoder] = []
    for offset, name in enumerate(categorical):
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=min_frequency,
            sparse_output=False,
        )
        blocks.append(np.asarray(encoder.fit_transform(_categories(table.rows, index[name]))))
        encoders.append(encoder)
        origins += [len(numeric) + offset] * blocks[-1].shape[1]
    matrix = np.hstack(blocks)
    classifier = LogisticRegression(C=regularisation, max_iter=2000)
    # lbfgs makes many small matrix products: BLAS threads cost more than they give here
    with threadpool_limits(limits=1):
        classifier.fit(matrix, target)
    return TabularModel(
        numeric=numeric,
        categorical=categorical,
        imputer=imputer,
        scaler=scaler,
        encoders=encoders,
        classifier=classifier,
        origins=origins,
        means=matrix.mean(axis=0),
        dropped=dropped,
    )


def _kinds(table: Table) -> tuple[list[str], list[str], list[str]]:
    numeric: list[str] = []
    categorical: list[str] = []
    dropped: list[str] = []
    for i, name in enumerate(table.columns):
        kinds = {type(row[i]) for row in table.rows}
        kinds.discard(type(None))
        if not kinds:
            dropped.append(name)
        elif kinds <= {int, float}:
            numeric.append(name)
        else:
            categorical.append(name)
    return numeric, categorical, dropped


def _numbers(rows: list[list[Value]], columns: list[int]) -> NDArray[np.float64]:
    picked = np.array(
        [[math.nan if row[i] is None else row[i] for i in columns] for row in rows], dtype=object
    ).reshape(len(rows), len(columns))
    try:
        return picked.astype(np.float64)
    except ValueError:  # text in a numeric column (a new value at scoring time): missing
        pass

    def number(value: Value) -> float:
        if value is None or isinstance(value, str):
            return math.nan
        return float(value)

    return np.array([[number(row[i]) for i in columns] for row in rows], dtype=np.float64).reshape(
        len(rows), len(columns)
    )


def _categories(rows: list[list[Value]], column: int) -> NDArray[np.object_]:
    return np.array(
        [[MISSING if row[column] is None else str(row[column])] for row in rows], dtype=object
    ).reshape(len(rows), 1)
