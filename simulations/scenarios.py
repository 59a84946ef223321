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
        description="digits, MLP 64-32-10, 6 clients: 3 PyTorch + 3 scikit-learn, FedAvg",
        dataset="digits",
        model="digits-mlp",
        frameworks=("torch", "sklearn"),
        num_clients=6,
        rounds=5,
        train={"local-epochs": 5, "batch-size": 32, "learning-rate": 0.01},
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
