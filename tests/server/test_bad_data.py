"""A node with unusable data refuses with one line, the server records it, and the others train on.

Each federation here is real and in-process (:class:`flonnx.server.federation.Federation` on a
:class:`LocalGrid`), with a spec that has no ``[data]`` table: every node names its own CSV file in its
node config, as a hospital's SuperNode does. Two nodes have good data; every other node has one
defect, so one federation checks every refusal at once. A refusal must be the node's exact one-line
message, recorded at the handshake (round 0) and again in every round the node is sampled, and must
not contain a cell's value: each bad file holds the distinctive values of :data:`SECRETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flonnx.client.app import app as client_app
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

ROUNDS = 2
FEATURES = ("age", "bmi", "chol", "bp")
LABEL = "diagnosis"
GOOD = ("good-a", "good-b")
#: Cell values that no refusal may repeat (every bad file holds the first; some also a second).
SECRETS = ("987654.321", "SECRET-7", "1e999")

Rows = list[list[Any]]


def _rows(seed: int, n: int = 40) -> Rows:
    """Binary data on the four features; the label depends on the first two."""
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES))).round(3)
    return [[*map(float, features), int(features[0] + features[1] > 0)] for features in x]


def _bad_rows() -> Rows:
    """Usable rows except for what a case changes; row 3 holds a distinctive (valid) value."""
    rows = _rows(3)
    rows[2][1] = 987654.321
    return rows


def _write(path: Path, rows: Rows, header: tuple[str, ...] = (*FEATURES, LABEL)) -> str:
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _node(client: str, data: str, **config: str) -> dict[str, Any]:
    return {"client-id": client, "framework": "torch", "data": data, "label": LABEL, **config}


def _with(rows: Rows, row: int, column: int, value: object) -> Rows:
    """``rows`` with one cell replaced (``row`` is 1-based, like the messages)."""
    changed = [list(r) for r in rows]
    changed[row - 1][column] = value
    return changed


@dataclass(frozen=True)
class Case:
    """One defect: the node config it gets (given a folder to write in) and its exact refusal."""

    client: str
    make: Callable[[Path], tuple[dict[str, Any], str]]
    at_handshake: str = "refused at the handshake: {}"  # how round 0 records the message


def _missing_file(d: Path) -> tuple[dict[str, Any], str]:
    path = str(d / "absent.csv")
    return _node("missing-file", path), f"data file {path} does not exist"


def _directory(d: Path) -> tuple[dict[str, Any], str]:
    (d / "folder.csv").mkdir()
    path = str(d / "folder.csv")
    return _node("directory", path), f"data file {path} is a directory, not a file"


def _not_utf8(d: Path) -> tuple[dict[str, Any], str]:
    path = d / "latin1.csv"
    _write(path, _bad_rows())
    lines = path.read_bytes().split(b"\n")
    lines[5] = b"\xe9" + lines[5]  # line 6 of the file = data row 5
    path.write_bytes(b"\n".join(lines))
    return _node("not-utf8", str(path)), f"data file {path} is not UTF-8 text (line 6)"


def _unknown_label(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "label.csv", _bad_rows())
    return (_node("unknown-label", path, label="outcome"),
            "label column 'outcome' is not in label.csv; its columns are: age, bmi, chol, bp, diagnosis")


def _unknown_feature(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "feature.csv", _bad_rows())
    return (_node("unknown-feature", path, features="age,weight,chol,bp"),
            "feature column 'weight' is not in feature.csv; its columns are: age, bmi, chol, bp, diagnosis")


def _not_a_number(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "text.csv", _with(_bad_rows(), 7, 1, "SECRET-7"))
    return (_node("not-a-number", path, features=",".join(FEATURES)),
            "column 'bmi', row 7: not a number")


def _missing_value(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "gap.csv", _with(_bad_rows(), 5, 2, ""))
    return (_node("missing-value", path, missing="refuse"),
            "column 'chol': 1 missing value (first at row 5); the missing-value policy is 'refuse'")


def _infinite(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "inf.csv", _with(_bad_rows(), 9, 0, "1e999"))
    return _node("infinite", path), "column 'age', row 9: infinite value"


def _five_features(d: Path) -> tuple[dict[str, Any], str]:
    rows = [[*r[:4], 987654.321, r[4]] for r in _bad_rows()]
    path = _write(d / "wide.csv", rows, (*FEATURES, "extra", LABEL))
    return _node("five-features", path), "the data has 5 features but the model expects 4"


def _label_outside_classes(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "classes.csv", _with(_bad_rows(), 12, 4, 37))
    return (_node("label-outside-classes", path),
            "label column 'diagnosis', row 12: a binary label must be 0 or 1")


def _too_few_rows(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "few.csv", _bad_rows()[:6])
    return _node("too-few-rows", path), "few.csv has 6 rows; at least 10 are needed (min-rows)"


def _too_few_for_its_own_minimum(d: Path) -> tuple[dict[str, Any], str]:
    path = _write(d / "min.csv", _bad_rows()[:30])
    return (_node("below-min-rows", path, **{"min-rows": "31"}),
            "min.csv has 30 rows; at least 31 are needed (min-rows)")


def _no_data_config(d: Path) -> tuple[dict[str, Any], str]:
    return ({"client-id": "no-data", "framework": "torch"},
            "this node names no data: start its SuperNode with --node-config "
            "'data=\"/path/site.csv\" label=\"COLUMN\"' (a simulated node gets partition-id from "
            "Flower instead)")


CASES = [
    Case("missing-file", _missing_file),
    Case("directory", _directory),
    Case("not-utf8", _not_utf8),
    Case("unknown-label", _unknown_label),
    Case("unknown-feature", _unknown_feature),
    Case("not-a-number", _not_a_number),
    Case("missing-value", _missing_value),
    Case("infinite", _infinite),
    # the node's data loads; the server sees its width at the handshake and refuses it there
    Case("five-features", _five_features, at_handshake="{}"),
    Case("label-outside-classes", _label_outside_classes),
    Case("too-few-rows", _too_few_rows),
    Case("below-min-rows", _too_few_for_its_own_minimum),
    Case("no-data", _no_data_config),
]


@dataclass(frozen=True)
class Outcome:
    """A finished run, with the records of its lineage and each bad node's expected message."""

    registry: Path
    run_id: str
    status: str
    records: list[VersionRecord]
    expected: dict[str, tuple[Case, str]]

    def rejected(self, client: str) -> dict[int, str]:
        return {r.round: r.reason for r in self.records
                if r.kind is VersionKind.REJECTED and r.client == client}


def _federate(folder: Path, cases: list[Case], *, standardize: bool, evaluate: str = "none") -> Outcome:
    nodes = [_node(GOOD[0], _write(folder / "good-a.csv", _rows(1))),
             _node(GOOD[1], _write(folder / "good-b.csv", _rows(2)))]
    expected = {}
    for case in cases:
        config, message = case.make(folder)
        nodes.append(config)
        expected[case.client] = (case, message)
    spec = parse_spec({"model": "mlp-4-8-2", "task": "binary", "clients": len(nodes),
                       "evaluate": evaluate, "rounds": ROUNDS, "min-train-nodes": 2,
                       "standardize": standardize})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=len(nodes))
    grid = LocalGrid(client_app, len(nodes), node_configs=nodes)

    run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]  # a Grid by duck typing

    with Registry(folder / "registry") as reg:
        records = [v.record for v in reg.versions(run_id)]
        status = reg.run(run_id).status
    return Outcome(folder / "registry", run_id, status, records, expected)


@pytest.fixture(scope="module")
def every_defect(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """One federation: the two good nodes and one node per case of :data:`CASES`."""
    return _federate(tmp_path_factory.mktemp("bad-data"), CASES, standardize=False)


STANDARDIZED = ("five-features", "not-a-number")


@pytest.fixture(scope="module")
def standardized(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Standardisation on (feature statistics at the handshake), evaluation on a file."""
    folder = tmp_path_factory.mktemp("bad-data-standardized")
    evaluation = _write(folder / "evaluation.csv", _rows(4, 30), (*FEATURES, "label"))
    return _federate(folder, [c for c in CASES if c.client in STANDARDIZED], standardize=True,
                     evaluate=evaluation)


@pytest.mark.parametrize("case", CASES, ids=[c.client for c in CASES])
def test_a_bad_node_is_refused_at_the_handshake_and_in_every_round_with_its_reason(
    every_defect: Outcome, case: Case,
) -> None:
    _, message = every_defect.expected[case.client]

    rejected = every_defect.rejected(case.client)

    # every node is sampled every round (fraction-train 1.0)
    assert rejected == {0: case.at_handshake.format(message),
                        **{rnd: f"client refused to train: {message}" for rnd in range(1, ROUNDS + 1)}}


@pytest.mark.parametrize("case", CASES, ids=[c.client for c in CASES])
def test_a_refusal_is_one_line_and_names_no_cell_value(every_defect: Outcome, case: Case) -> None:
    reasons = every_defect.rejected(case.client).values()

    assert reasons
    for reason in reasons:
        assert "\n" not in reason
        assert not [secret for secret in SECRETS if secret in reason], reason


def test_the_good_nodes_train_every_round_despite_the_bad_ones(every_defect: Outcome) -> None:
    _assert_good_nodes_aggregated(every_defect)


@pytest.mark.parametrize("client", STANDARDIZED)
def test_with_standardisation_a_bad_node_is_refused_with_the_same_reason(
    standardized: Outcome, client: str,
) -> None:
    case, message = standardized.expected[client]

    rejected = standardized.rejected(client)

    assert rejected == {0: case.at_handshake.format(message),
                        **{rnd: f"client refused to train: {message}" for rnd in range(1, ROUNDS + 1)}}


def test_standardisation_combines_the_good_nodes_statistics_only(standardized: Outcome) -> None:
    good = np.asarray([r[:4] for r in _rows(1) + _rows(2)], np.float32).astype(np.float64)
    (initial,) = [r for r in standardized.records if r.kind is VersionKind.INITIAL]

    with Registry(standardized.registry) as reg:
        definition = reg.get_definition(initial.definition_id)
    pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])

    np.testing.assert_allclose(pre.mean, good.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(pre.std, good.std(axis=0), rtol=1e-9)


def test_with_standardisation_the_good_nodes_train_and_are_evaluated(standardized: Outcome) -> None:
    aggregates = _assert_good_nodes_aggregated(standardized)

    assert all("accuracy" in a.metrics for a in aggregates)


def _assert_good_nodes_aggregated(outcome: Outcome) -> list[VersionRecord]:
    by_id = {r.version_id: r for r in outcome.records}
    aggregates = [r for r in outcome.records if r.kind is VersionKind.AGGREGATE]

    assert outcome.status == "completed"
    assert [a.round for a in aggregates] == list(range(1, ROUNDS + 1))
    for aggregate in aggregates:
        parents = [by_id[p] for p in aggregate.parents]
        assert sorted(p.client for p in parents) == list(GOOD)
        assert {(p.kind, p.round) for p in parents} == {(VersionKind.CLIENT_UPDATE, aggregate.round)}
    return aggregates
