"""The training examples in docs/interpreter.md run as written, on the model they name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "interpreter.md"


def _examples() -> list[str]:
    """The python blocks after "Example training step": the torch one, then the JAX one."""
    text = DOC.read_text()
    return re.findall(r"```python\n(.*?)```", text[text.index("Example training step"):], re.S)[:2]


def test_the_torch_and_jax_training_examples_run_on_the_model_they_name() -> None:
    pytest.importorskip("torch", reason="the first example trains with torch (and builds the zoo model)")
    pytest.importorskip("jax", reason="the second example trains with jax")
    pytest.importorskip("optax", reason="the second example's loss is optax's")
    torch_example, jax_example = _examples()
    scope: dict[str, Any] = {}

    exec(compile(torch_example, f"{DOC}:torch", "exec"), scope)  # noqa: S102 - our own documentation
    exec(compile(jax_example, f"{DOC}:jax", "exec"), scope)  # noqa: S102

    assert scope["prog"].input_names == ["input"] and scope["prog"].output_names == ["logits"]
    assert tuple(scope["outputs"]["logits"].shape) == (32, 10)
    assert all(param.grad is not None for param in scope["opt"].param_groups[0]["params"])
    assert set(scope["grads"]) == set(scope["params"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
