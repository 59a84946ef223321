"""Per-group metrics for a sensitive column (exchange/groups.py) and the spec's ``sensitive`` key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, roc_auc_score

from flonnx.exchange.groups import (
    group_key,
    group_metrics,
    groups_from_metrics,
    metrics_of_groups,
    worst_and_spread,
)
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.spec import SpecError, parse_spec, spec_from_json


def _binary(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits [n, 2], labels, group values) with groups of 30, 20 and 10 rows."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 2))
    y = rng.integers(0, 2, n)
    groups = np.array(["F"] * 30 + ["M"] * 20 + ["X"] * 10, dtype=object)
    return logits, y, groups


def test_each_groups_metrics_are_scikit_learns_on_that_groups_rows() -> None:
    logits, y, groups = _binary()

    report = group_metrics(logits, y, groups, "binary", "logits")

    assert [(g.value, g.support) for g in report.groups] == [("F", 30), ("M", 20), ("X", 10)]
    for group in report.groups:
        rows = groups == group.value
        predicted = np.argmax(logits[rows], axis=1)
        assert group.metrics["accuracy"] == pytest.approx(accuracy_score(y[rows], predicted))
        assert group.metrics["macro-f1"] == pytest.approx(f1_score(y[rows], predicted, average="macro"))
        assert group.metrics["roc-auc"] == pytest.approx(
            roc_auc_score(y[rows], logits[rows, 1] - logits[rows, 0]))
    assert (report.suppressed, report.left_out) == (0, 0)


def test_regression_groups_have_the_regression_metrics() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=40).astype(np.float32)
    predicted = y + rng.normal(scale=0.3, size=40)
    groups = np.array(["a", "b"] * 20, dtype=object)

    report = group_metrics(predicted.reshape(-1, 1), y, groups, "regression", "value")

    for group in report.groups:
        rows = groups == group.value
        assert group.metrics["mse"] == pytest.approx(mean_squared_error(y[rows], predicted[rows]))
        assert group.metrics["r2"] == pytest.approx(r2_score(y[rows], predicted[rows]))


def test_small_groups_are_suppressed_and_groups_beyond_the_cap_left_out() -> None:
    logits, y, groups = _binary()

    small = group_metrics(logits, y, groups, "binary", "logits", min_rows=15)
    capped = group_metrics(logits, y, groups, "binary", "logits", max_groups=2)

    assert [g.value for g in small.groups] == ["F", "M"] and small.suppressed == 1
    assert [g.value for g in capped.groups] == ["F", "M"] and capped.left_out == 1


def test_a_suppressed_group_sends_nothing_but_its_count() -> None:
    logits, y, groups = _binary()

    sent = metrics_of_groups(group_metrics(logits, y, groups, "binary", "logits", min_rows=15))

    assert not any(k.startswith("group.X.") for k in sent)
    assert sent["groups.suppressed"] == 1.0 and sent["group.F.support"] == 30.0


def test_group_values_become_bounded_escaped_key_tokens() -> None:
    long = "a" * 100

    assert group_key("F") == "F"
    assert group_key("60+ y.o.") == "60%2B%20y%2Eo%2E"
    assert group_key("ü") == "%C3%BC"
    assert len(group_key(long)) == 40 and group_key(long) != group_key(long + "b")
    assert "." not in group_key("1.5") and "\n" not in group_key("a\nb")


def test_site_metrics_split_back_into_its_own_and_its_groups() -> None:
    logits, y, groups = _binary()
    report = group_metrics(logits, y, np.where(groups == "X", "x.y", groups), "binary", "logits")
    sent = {"accuracy": 0.5, "num-examples": 60.0, **metrics_of_groups(report)}

    own, back = groups_from_metrics(sent)

    assert own == {"accuracy": 0.5, "num-examples": 60.0}
    assert back is not None
    assert [(g.value, g.support) for g in back.groups] == [("F", 30), ("M", 20), ("x%2Ey", 10)]
    assert back.groups[0].metrics == report.groups[0].metrics
    assert groups_from_metrics({"accuracy": 0.5}) == ({"accuracy": 0.5}, None)


def test_the_worst_group_has_the_lowest_headline_metric_ties_by_name() -> None:
    summary = worst_and_spread({"b": {"accuracy": 0.5}, "a": {"accuracy": 0.5}, "c": {"accuracy": 0.9}},
                               "binary")

    assert summary == {"metric": "accuracy", "worst": "a", "worst_value": 0.5,
                       "mean": pytest.approx(1.9 / 3), "spread": pytest.approx(0.4)}
    assert worst_and_spread({}, "regression") == {"metric": "r2"}


# -- the spec -------------------------------------------------------------------------------------
def _csv(tmp_path: Path) -> str:
    rows = [f"{i / 10},{'F' if i % 3 else ''},{i % 2}" for i in range(30)]
    path = tmp_path / "d.csv"
    path.write_text("x,sex,target\n" + "\n".join(rows) + "\n")
    return str(path)


def test_a_spec_names_a_sensitive_column_and_keeps_it_in_its_recorded_form(tmp_path: Path) -> None:
    spec = parse_spec({"model": "mlp-1-2-2", "task": "binary", "clients": 2,
                       "data": {"source": _csv(tmp_path), "features": ["x"], "sensitive": "sex"}})

    assert spec.data is not None and spec.data.sensitive == "sex"
    assert spec_from_json(spec.to_toml_dict()) == spec
    plain = parse_spec({"model": "mlp-1-2-2", "clients": 2, "data": "digits"})
    assert "sensitive" not in plain.to_toml_dict()["data"]


def test_the_sensitive_column_cannot_be_the_label(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="key 'data.sensitive': 'target' is the label column"):
        parse_spec({"model": "mlp-1-2-2", "clients": 2,
                    "data": {"source": _csv(tmp_path), "sensitive": "target"}})


def test_a_sources_groups_follow_its_rows_with_missing_cells_named(tmp_path: Path) -> None:
    spec = parse_spec({"model": "mlp-1-2-2", "task": "binary", "evaluate": 0.5, "clients": 2,
                       "data": {"source": _csv(tmp_path), "features": ["x"], "sensitive": "sex"}})
    source = evaluation_source(spec)
    assert source is not None

    x, _ = source.load()
    groups = source.groups("sex")

    expected = np.where(np.round(x[:, 0] * 10).astype(int) % 3 == 0, "<missing>", "F")
    assert list(groups) == list(expected)
    with pytest.raises(Exception, match="sensitive column 'age' is not in d.csv; its columns are: x, sex"):
        source.groups("age")
