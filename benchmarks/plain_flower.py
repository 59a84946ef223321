"""The plain Flower baseline of B1: a ServerApp/ClientApp pair with Flower's own FedAvg.

The same training as a flonnx torch node (the zoo's digits MLP, Adam, batch size, learning rate,
local epochs, seeded shuffles), on the same partitions (the same index split: the rows come from
flonnx's data sources, which only read and partition the table), and the same central evaluation
(accuracy on the spec's hold-out, every round) - but no validation, hashing, lineage or registry.

``make_apps(spec, probe)`` returns the two apps; ``probe`` (a :class:`Probe`) receives the time of
each central evaluation and, through a wrapped Grid, the serialized size of every message.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CountingGrid", "Probe", "make_apps", "message_bytes"]


def message_bytes(message: Any) -> int:
    """Serialized size of a Flower message (its protobuf, as it would cross the wire)."""
    from flwr.common.serde import message_to_proto

    return int(message_to_proto(message).ByteSize())


@dataclass
class Probe:
    """What the benchmark reads back: evaluation times, bytes per message type and direction."""

    evaluated_at: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: per direction and message type: bytes of array data, and the serialized rest
    arrays: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))


def _array_bytes(message: Any) -> int:
    if message.has_error():
        return 0
    return sum(len(a.data) for rec in message.content.array_records.values() for a in rec.values())


def _record_bytes(message: Any) -> dict[str, int]:
    """Serialized size of each record of a message (by record name)."""
    from flwr.common.serde import recorddict_to_proto

    if message.has_error():
        return {}
    out = {}
    for name, record in message.content.items():
        single = type(message.content)({name: record})
        out[name] = int(recorddict_to_proto(single).ByteSize())
    return out


class CountingGrid:
    """Wraps a Grid: every message sent and every reply received is sized (then passed on)."""

    def __init__(self, grid: Any, probe: Probe) -> None:
        self._grid, self._probe = grid, probe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> Any:
        """Size, forward, size the replies."""
        messages = list(messages)
        for m in messages:
            self._probe.sent[m.metadata.message_type] += message_bytes(m)
            self._probe.messages[m.metadata.message_type] += 1
            self._probe.arrays[f"sent {m.metadata.message_type}"] += _array_bytes(m)
            for name, size in _record_bytes(m).items():
                self._probe.records[f"sent {m.metadata.message_type}"][name] += size
        replies = self._grid.send_and_receive(messages, timeout=timeout)
        for r in replies:
            self._probe.received[r.metadata.message_type] += message_bytes(r)
            self._probe.arrays[f"received {r.metadata.message_type}"] += _array_bytes(r)
            for name, size in _record_bytes(r).items():
                self._probe.records[f"received {r.metadata.message_type}"][name] += size
        return replies


def make_apps(spec: Any, probe: Probe) -> tuple[Any, Any]:
    """The ServerApp and ClientApp of the baseline for ``spec`` (a flonnx FederationSpec)."""
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from flonnx.exchange.sources import evaluation_source, node_source
    from flonnx.exchange.zoo import build, model_spec

    model_name = str(spec.model)
    zoo = model_spec(model_name)
    shape = tuple(zoo.input_shape) if zoo is not None else (-1,)  # e.g. the CNN's 1x8x8
    rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # per node process: read once

    def partition(part: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
        if (part, parts) not in rows:
            x, y = node_source({"partition-id": part, "num-partitions": parts}, spec, spec.task).load()
            rows[part, parts] = (np.asarray(x, np.float32).reshape((len(x), *shape)),
                                 np.asarray(y, np.int64))
        return rows[part, parts]
    train = spec.train_settings
    epochs, batch, lr = (int(train.get("local-epochs", 1)), int(train.get("batch-size", 32)),
                         float(train.get("learning-rate", 0.01)))

    client_app = ClientApp()

    @client_app.train()
    def fit(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        part, parts = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
        x, y = partition(part, parts)
        rnd = int(msg.content.config_records["config"]["server-round"])  # type: ignore[arg-type]
        seed = spec.seed * 1000 + rnd * 100 + part
        torch.manual_seed(seed)
        model = build(model_name)
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        rng = np.random.default_rng(seed)
        model.train()
        loss = torch.zeros(())
        for _ in range(epochs):
            order = rng.permutation(len(ys))
            for start in range(0, len(ys), batch):
                idx = torch.from_numpy(order[start:start + batch])
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
                loss.backward()
                optimizer.step()
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"num-examples": len(ys),
                                                       "train-loss": float(loss)})})
        return Message(content=content, reply_to=msg)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        source = evaluation_source(spec)
        assert source is not None
        ex, ey = source.load()
        ex_t = torch.from_numpy(np.asarray(ex, np.float32).reshape((len(ex), *shape)))
        ey_t = torch.from_numpy(np.asarray(ey, np.int64))
        torch.manual_seed(spec.seed)
        model = build(model_name)

        def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            model.load_state_dict(arrays.to_torch_state_dict())
            model.eval()
            with torch.no_grad():
                accuracy = float((model(ex_t).argmax(1) == ey_t).float().mean())
            probe.accuracy.append(accuracy)
            probe.evaluated_at.append(time.perf_counter())
            return MetricRecord({"accuracy": accuracy})

        n = int(context.run_config.get("num-nodes", spec.clients))  # type: ignore[arg-type]
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                          min_available_nodes=n)
        strategy.start(grid=CountingGrid(grid, probe), initial_arrays=ArrayRecord(model.state_dict()),  # type: ignore[arg-type]
                       num_rounds=spec.rounds, train_config=ConfigRecord({"lr": lr}),
                       evaluate_fn=central)

    return server_app, client_app


def run_on_ray(server_app: Any, client_app: Any, clients: int) -> None:
    """Run the baseline's apps on Flower's Simulation Engine, Ray started as flonnx starts it.

    Both sides then pay the same start-up; one CPU per node, Flower's and Ray's logs quiet.
    """
    import warnings

    from flwr.simulation import run_simulation

    from flonnx.simulations.runner import _quiet_flower, _start_ray, _stop_ray

    init_args: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    with warnings.catch_warnings(), _quiet_flower(False):
        warnings.simplefilter("ignore")
        _start_ray(init_args)
        try:
            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                           backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                           "init_args": init_args})
        finally:
            _stop_ray()
