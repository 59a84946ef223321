"""The one table of frameworks a node can train with.

Each entry names the package that must be installed, how the framework trains the shared ONNX
definition, and the pip extra that installs it. The trainers (``client/trainers/NAME_trainer.py``),
the spec's ``frameworks`` counts and ``flonnx check`` all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FRAMEWORKS", "Framework"]


@dataclass(frozen=True)
class Framework:
    """A framework flonnx trains with."""

    name: str
    package: str  # import name, to detect it
    how: str
    extra: str  # pip install 'flonnx[EXTRA]'


FRAMEWORKS: dict[str, Framework] = {
    f.name: f for f in (
        Framework("torch", "torch", "native nn.Module for zoo models, else the interpreter's torch "
                  "backend (autograd)", "torch"),
        Framework("jax", "jax", "the interpreter's jax backend (jax.grad, jit), optax Adam", "jax"),
        Framework("sklearn", "sklearn", "MLPClassifier/MLPRegressor mapped onto the graph's dense "
                  "chain", "sklearn"),
    )
}
