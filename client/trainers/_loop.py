"""What every trainer shares: the task objective, the parity gate, the batch order, FedProx.

A framework trainer provides three things — ``run`` (its forward pass, for the parity check), ``step``
(one optimiser step on a batch of example indices, returning that batch's loss) and ``finish`` (the
trained weights) — and :func:`train_loop` does the rest in one order for every framework:

1. parity with ONNX Runtime on seeded probes (:func:`flonnx.exchange.parity.check_parity`);
2. ``local_epochs`` epochs over batches in an order drawn from ``numpy.random.default_rng(seed)``, so
   the same seed visits the same batches in every framework and results are bit-reproducible;
3. the reported ``train-loss``: the mean batch loss of the last epoch.

The task losses are written once, in :func:`task_loss`, over a handful of primitives
(:class:`LossOps`) that each array framework binds (:func:`torch_ops`, :func:`jax_ops`); the
frameworks are imported inside those functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flonnx.client.trainers import TrainConfig, TrainResult
from flonnx.exchange.definition import Definition
from flonnx.exchange.parity import check_parity
from flonnx.exchange.task import OutputKind, Task, TaskOutput, check_targets, parse_task, task_output

__all__ = [
    "LossOps",
    "Objective",
    "jax_ops",
    "objective",
    "proximal_term",
    "run_epochs",
    "task_loss",
    "torch_ops",
    "train_loop",
]

#: Probabilities are clipped to [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR] before a logarithm.
PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class Objective:
    """What a trainer fits: the task and the graph output (name, kind, width) it is fitted on."""

    task: Task
    output: TaskOutput

    @property
    def float_targets(self) -> bool:
        """Whether the loss takes float targets (one logit/probability, regression) not labels."""
        return not self.output.kind.per_class

    def targets(self, y: np.ndarray, *, label_dtype: type[np.integer[Any]] = np.int64) -> np.ndarray:
        """``y`` checked against the task and converted to the dtype the loss takes."""
        classes = None if self.task is Task.REGRESSION else (
            2 if self.task is Task.BINARY else self.output.width)
        check_targets(y, self.task, classes)
        return np.asarray(y, np.float32 if self.float_targets else label_dtype)


def objective(definition: Definition, config: TrainConfig) -> Objective:
    """The round's objective; :class:`~flonnx.exchange.errors.InvalidModel` if the output misfits the task."""
    task = parse_task(config.task)
    return Objective(task, task_output(definition, task))


@dataclass(frozen=True)
class LossOps:
    """The framework primitives :func:`task_loss` is written with (each returns a batch mean)."""

    cross_entropy: Callable[[Any, Any], Any]  # logits [B, C], int labels [B]
    nll: Callable[[Any, Any], Any]  # log-probabilities [B, C], int labels [B]
    bce_with_logits: Callable[[Any, Any], Any]  # logits [B], float targets [B]
    log: Callable[[Any], Any]
    clip: Callable[[Any, float, float], Any]


def task_loss(ops: LossOps, kind: OutputKind, out: Any, y: Any) -> Any:
    """Mean loss of a batch for an output of kind ``kind``.

    Cross-entropy for classes (classification, two-class binary), binary cross-entropy for one logit
    or probability, squared error for a regression value.
    """
    if kind is OutputKind.LOGITS:
        return ops.cross_entropy(out, y)
    if kind is OutputKind.PROBABILITIES:
        return ops.nll(ops.log(ops.clip(out, PROBABILITY_FLOOR, 1.0)), y)
    if kind is OutputKind.LOGIT:
        return ops.bce_with_logits(out.reshape(-1), y)
    if kind is OutputKind.PROBABILITY:
        p = ops.clip(out.reshape(-1), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p)).mean()
    return ((out.reshape(-1) - y) ** 2).mean()


def torch_ops() -> LossOps:
    """:class:`LossOps` over torch tensors."""
    import torch
    from torch.nn import functional

    return LossOps(functional.cross_entropy, functional.nll_loss,
                   functional.binary_cross_entropy_with_logits, torch.log, torch.clamp)


def jax_ops() -> LossOps:
    """:class:`LossOps` over JAX arrays."""
    import jax.numpy as jnp
    import optax

    def nll(log_p: Any, y: Any) -> Any:
        return -jnp.take_along_axis(log_p, y[:, None], axis=1).mean()

    return LossOps(
        lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
        nll,
        lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean(),
        jnp.log,
        jnp.clip,
    )


def proximal_term(params: Mapping[str, Any], anchor: Mapping[str, Any], mu: float) -> Any:
    """FedProx's ``(mu / 2) * ||w - w_global||²`` over ``params`` (any array type with ``.sum()``)."""
    return 0.5 * mu * sum(((params[k] - anchor[k]) ** 2).sum() for k in params)


def run_epochs(n: int, config: TrainConfig, step: Callable[[np.ndarray], Any]) -> float:
    """Call ``step`` on every batch of ``local_epochs`` seeded epochs; the last epoch's mean loss."""
    rng = np.random.default_rng(config.seed)
    losses: list[Any] = []
    for _ in range(config.local_epochs):
        losses = []
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            losses.append(step(order[start : start + config.batch_size]))
    return float(np.mean([float(v) for v in losses])) if losses else 0.0


def train_loop(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    config: TrainConfig,
    *,
    framework: str,
    num_examples: int,
    run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    step: Callable[[np.ndarray], Any],
    finish: Callable[[], dict[str, np.ndarray]],
    transform_reference: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
) -> TrainResult:
    """Parity check, seeded epochs of ``step``, then ``finish``'s weights with the common metrics.

    Raises:
        ParityError: ``run`` does not reproduce ONNX Runtime; nothing is trained.
    """
    parity = check_parity(definition, weights, run, framework=framework, seed=config.seed,
                          transform_reference=transform_reference)
    loss = run_epochs(num_examples, config, step)
    return TrainResult(
        weights=finish(),
        num_examples=num_examples,
        metrics={"train-loss": loss, "parity-max-abs": parity.max_abs},
    )
