"""Tasks: parsing, which output a trainer fits, and refusals of models and labels that do not fit."""

from __future__ import annotations

import numpy as np
import pytest

from flonnx.exchange.errors import FlonnxError, InvalidModel
from flonnx.exchange.task import (
    InvalidTargets,
    InvalidTask,
    OutputKind,
    Task,
    check_targets,
    classifier_output,
    num_classes,
    parse_task,
    task_output,
)
from tests.tiny_models import gemm_mlp


def test_parse_task_accepts_every_task_and_lists_them_on_error() -> None:
    assert [parse_task(t) for t in ("classification", " Binary ", "REGRESSION")] == list(Task)

    with pytest.raises(InvalidTask, match="unknown task 'ranking'; allowed tasks: classification, "
                                          "binary, regression") as info:
        parse_task("ranking")
    assert isinstance(info.value, FlonnxError)


@pytest.mark.parametrize(("task", "model", "kind", "width"), [
    ("classification", {"outputs": 3}, OutputKind.LOGITS, 3),
    ("classification", {"outputs": 2}, OutputKind.LOGITS, 2),
    ("classification", {"outputs": 4, "head": "Softmax"}, OutputKind.PROBABILITIES, 4),
    ("binary", {"outputs": 1}, OutputKind.LOGIT, 1),
    ("binary", {"outputs": 1, "flat": True}, OutputKind.LOGIT, 1),
    ("binary", {"outputs": 1, "head": "Sigmoid", "flat": True}, OutputKind.PROBABILITY, 1),
    ("binary", {"outputs": 2}, OutputKind.LOGITS, 2),
    ("binary", {"outputs": 2, "head": "Softmax"}, OutputKind.PROBABILITIES, 2),
    ("regression", {"outputs": 1}, OutputKind.VALUE, 1),
    ("regression", {"outputs": 1, "flat": True}, OutputKind.VALUE, 1),
])
def test_task_output_reads_kind_and_width_from_the_graph(task, model, kind, width) -> None:
    definition, _ = gemm_mlp(4, 5, **model)

    output = task_output(definition, task)

    assert (output.name, output.kind, output.width) == ("y", kind, width)


@pytest.mark.parametrize(("task", "outputs", "message"), [
    ("regression", 10, "task regression fits one value per example, but output 'y' has 10 columns"),
    ("binary", 3, "task binary fits one logit or two classes, but output 'y' has 3 columns"),
    ("classification", 1, "task classification needs one column per class .* use task binary"),
])
def test_task_output_refuses_a_model_that_does_not_fit(task, outputs, message) -> None:
    definition, _ = gemm_mlp(4, 5, outputs)

    with pytest.raises(InvalidModel, match=message):
        task_output(definition, task)


def test_num_classes_per_task() -> None:
    three, _ = gemm_mlp(4, 5, 3)
    one, _ = gemm_mlp(4, 5, 1)

    assert num_classes(three, "classification") == 3
    assert num_classes(one, "binary") == 2
    assert num_classes(one, "regression") is None


def test_classifier_output_still_says_logits_or_probabilities() -> None:
    logits, _ = gemm_mlp(4, 5, 3)
    probabilities, _ = gemm_mlp(4, 5, 3, head="Softmax")

    assert classifier_output(logits).probabilities is False
    assert classifier_output(probabilities).probabilities is True


@pytest.mark.parametrize(("y", "task", "classes", "message"), [
    (np.array([0, 1, 2]), "binary", 2, "labels in 0..1; got labels from 0 to 2"),
    (np.array([0, -1]), "classification", 3, "labels in 0..2"),
    (np.array([0.0, 1.0]), "binary", 2, "needs integer labels"),
    (np.array([[0], [1]]), "classification", 2, r"shape \[N\]"),
    (np.array([0.5, np.nan], np.float32), "regression", None, "finite numbers"),
])
def test_check_targets_refuses_labels_that_do_not_fit(y, task, classes, message) -> None:
    with pytest.raises(InvalidTargets, match=message):
        check_targets(y, task, classes)


def test_check_targets_accepts_fitting_labels() -> None:
    check_targets(np.array([0, 1, 1]), "binary", 2)
    check_targets(np.array([2, 0]), "classification", 3)
    check_targets(np.array([0.5, -3.0], np.float32), "regression", None)
