"""Named scenarios: data, model, framework mix, strategy and training settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange.errors import FlonnxError

__all__ = ["SCENARIOS", "Scenario", "framework_for", "get_scenario"]


@dataclass(frozen=True)
class Scenario:
    """Everything that defines a simulated federation except the seed and round count."""

    name: str
    description: str
    dataset: str
    model: str
    frameworks: tuple[str, ...]  # the mix, assigned to partitions in contiguous blocks
    num_clients: int
    rounds: int
    strategy: str = "fedavg"
    image_input: bool = False
    train: dict[str, float | int] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    "digits-mixed": Scenario(
        name="digits-mixed",
        description="digits, MLP 64-32-10, 6 clients: 2 PyTorch + 2 JAX + 2 scikit-learn, FedAvg",
        dataset="digits",
        model="digits-mlp",
        frameworks=("torch", "jax", "sklearn"),
        num_clients=6,
        rounds=5,
        train={"local-epochs": 5, "batch-size": 32, "learning-rate": 0.01},
    ),
    "digits-cnn": Scenario(
        name="digits-cnn",
        description="digits as 1x8x8 images, CNN with BatchNorm, 6 clients: 3 PyTorch + 3 JAX, FedAvg",
        dataset="digits",
        model="digits-cnn",
        frameworks=("torch", "jax"),
        num_clients=6,
        rounds=10,
        image_input=True,
        train={"local-epochs": 5, "batch-size": 32, "learning-rate": 0.01},
    ),
    "digits-faulty": Scenario(
        name="digits-faulty",
        description="digits-mixed with two bad nodes: partition 4 always raises, partition 5 sends "
        "NaN weights (demo and test of failure handling)",
        dataset="digits",
        model="digits-mlp",
        frameworks=("torch", "sklearn", "torch", "sklearn", "faulty-raise", "faulty-nan"),
        num_clients=6,
        rounds=2,
        train={"local-epochs": 2, "batch-size": 32, "learning-rate": 0.01},
    ),
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; the error lists the known ones."""
    if name not in SCENARIOS:
        raise FlonnxError(f"unknown scenario {name!r}; available: {', '.join(sorted(SCENARIOS))}")
    return SCENARIOS[name]


def framework_for(frameworks: tuple[str, ...] | list[str], partition_id: int, num_partitions: int) -> str:
    """The framework of a partition: the mix in contiguous blocks (6 clients, 2 frameworks: 3 + 3)."""
    return frameworks[partition_id * len(frameworks) // num_partitions]
