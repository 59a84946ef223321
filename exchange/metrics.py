"""Task metrics from a model's outputs, in numpy only (the server may have no ML framework).

Every value is finite, so a metric can always travel in a Flower ``MetricRecord`` and a lineage record:

* probabilities are clipped to ``[1e-12, 1 - 1e-12]`` before a logarithm;
* a non-finite model output counts as 0 (NaN) or as the largest float32 (±inf);
* ROC-AUC with only one class present is 0.5 (no ranking to judge: the value of a random score);
* R² with constant targets is 1.0 when the predictions are exact and 0.0 otherwise (as
  scikit-learn's ``r2_score`` with ``force_finite=True``).

Keys: classification ``accuracy``, ``macro-f1``, ``loss`` (mean cross-entropy); binary the same plus
``roc-auc`` (``loss`` is the binary cross-entropy); regression ``mse``, ``mae``, ``r2`` and ``loss``
(= ``mse``). Macro-F1 averages over the classes present in the labels or the predictions, as
scikit-learn does.
"""

from __future__ import annotations

import numpy as np

from flonnx.exchange.task import OutputKind, Task, parse_task

__all__ = ["EPSILON", "macro_f1", "roc_auc", "task_metrics"]

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before a logarithm.
EPSILON = 1e-12

_BIG = float(np.finfo(np.float32).max)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def macro_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean F1 over the labels present in ``y`` or ``predicted``."""
    labels = np.union1d(y, predicted)
    if labels.size == 0:
        return 0.0
    scores = []
    for label in labels:
        tp = float(np.sum((predicted == label) & (y == label)))
        fp = float(np.sum((predicted == label) & (y != label)))
        fn = float(np.sum((predicted != label) & (y == label)))
        scores.append(2 * tp / (2 * tp + fp + fn))  # > 0: the label occurs somewhere
    return float(np.mean(scores))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values), np.float64)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for labels ``y`` in {0, 1}; 0.5 with one class only.

    The Mann-Whitney U statistic over average ranks: a tie between a positive and a negative counts
    one half, as the trapezoidal ROC curve does.
    """
    positive = np.asarray(y) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = _average_ranks(np.asarray(scores, np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _classification(outputs: np.ndarray, y: np.ndarray, kind: OutputKind) -> dict[str, float]:
    if outputs.ndim != 2:
        raise ValueError(f"{kind.value} must be [N, classes]; got shape {list(outputs.shape)}")
    if kind is OutputKind.PROBABILITIES:
        log_p = np.log(np.clip(outputs, EPSILON, 1.0))
    else:
        log_p = _log_softmax(outputs)
    predicted = np.argmax(outputs, axis=1)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "macro-f1": macro_f1(y, predicted),
        "loss": float(-np.mean(log_p[np.arange(len(y)), y])),
    }


def _binary(outputs: np.ndarray, y: np.ndarray, kind: OutputKind) -> dict[str, float]:
    if kind.per_class:
        if outputs.ndim != 2 or outputs.shape[1] != 2:
            raise ValueError(f"binary {kind.value} must be [N, 2]; got shape {list(outputs.shape)}")
        metrics = _classification(outputs, y, kind)
        # A difference of logits ranks like the probability of class 1, without saturating.
        score = outputs[:, 1] - outputs[:, 0] if kind is OutputKind.LOGITS else outputs[:, 1]
        return {**metrics, "roc-auc": roc_auc(y, score)}
    score = outputs.reshape(len(y))
    target = y.astype(np.float64)
    if kind is OutputKind.LOGIT:
        # log(1 + e^z) - y z, stably
        loss = np.mean(np.logaddexp(0.0, score) - target * score)
        predicted = (score > 0).astype(np.int64)
    else:
        p = np.clip(score, EPSILON, 1.0 - EPSILON)
        loss = -np.mean(target * np.log(p) + (1.0 - target) * np.log1p(-p))
        predicted = (score > 0.5).astype(np.int64)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "macro-f1": macro_f1(y, predicted),
        "roc-auc": roc_auc(y, score),
        "loss": float(loss),
    }


def _regression(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    predicted = outputs.reshape(len(y))
    target = y.astype(np.float64)
    residual = target - predicted
    mse = float(np.mean(residual**2))
    total = float(np.sum((target - target.mean()) ** 2))
    remaining = float(np.sum(residual**2))
    if total > 0.0:
        r2 = 1.0 - remaining / total
    else:
        r2 = 1.0 if remaining == 0.0 else 0.0
    return {"mse": mse, "mae": float(np.mean(np.abs(residual))), "r2": r2, "loss": mse}


def task_metrics(
    outputs: np.ndarray, y: np.ndarray, task: Task | str, output_kind: OutputKind | str
) -> dict[str, float]:
    """The task's metrics of model ``outputs`` (``[N, ...]``) against labels or targets ``y`` (``[N]``).

    Raises:
        ValueError: ``outputs`` and ``y`` disagree on N or the output kind does not fit the task.
    """
    task, kind = parse_task(task), OutputKind(output_kind)
    y = np.asarray(y).reshape(-1)
    outputs = np.nan_to_num(np.asarray(outputs, np.float64), nan=0.0, posinf=_BIG, neginf=-_BIG)
    if len(outputs) != len(y) or len(y) == 0:
        raise ValueError(f"{len(outputs)} outputs for {len(y)} targets; need the same N > 0")
    if outputs.size != len(y) and not kind.per_class:
        raise ValueError(f"{kind.value} output must be one value per example; got {list(outputs.shape)}")
    if task is Task.REGRESSION:
        if kind is not OutputKind.VALUE:
            raise ValueError(f"task regression evaluates a value output, not {kind.value}")
        return _regression(outputs, y)
    y = y.astype(np.int64)
    if task is Task.BINARY:
        if kind is OutputKind.VALUE:
            raise ValueError("task binary evaluates logits or probabilities, not a regression value")
        return _binary(outputs, y, kind)
    if not kind.per_class:
        raise ValueError(f"task classification evaluates [N, classes] outputs, not {kind.value}")
    return _classification(outputs, y, kind)
