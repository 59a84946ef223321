"""Other processes for the registry tests: ``python -m tests.exchange.registry_worker COMMAND …``.

- ``lock REGISTRY BLOBS RUN``: take the run's lock, print ``locked``, hold it until killed.
- ``try-lock REGISTRY BLOBS RUN``: print ``locked`` and exit 0, or ``refused: …`` and exit 3.
- ``write REGISTRY BLOBS RUN ROUNDS CLIENTS``: commit ROUNDS rounds of CLIENTS updates and an
  aggregate each (after an initial version), printing ``round R`` after each commit.

``BLOBS`` is ``-`` for a directory registry's own blob store.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import RunLocked
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry


def tiny_definition() -> tuple[Definition, dict[str, np.ndarray]]:
    """A one-MatMul definition and its weights."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[w])
    return Definition.from_model(helper.make_model(graph))


def write_rounds(registry: Registry, run_id: str, rounds: int, clients: int, *, say: bool = False) -> None:
    """An initial version, then per round ``clients`` updates and their aggregate, one commit each."""
    definition, weights = tiny_definition()
    registry.put_definition(definition)
    initial = VersionRecord(VersionKind.INITIAL, 0, definition.id, registry.put_weights(weights))
    registry.commit(run_id, [initial], head_round=0, head=initial.version_id)
    head = initial
    for rnd in range(1, rounds + 1):
        updates = [
            VersionRecord(VersionKind.CLIENT_UPDATE, rnd, definition.id,
                          registry.put_weights({"w": weights["w"] + rnd + k / 10}),
                          parents=(head.version_id,), client=f"c{k}", num_examples=10)
            for k in range(clients)
        ]
        aggregate = VersionRecord(VersionKind.AGGREGATE, rnd, definition.id,
                                  registry.put_weights({"w": weights["w"] + rnd + 0.05}),
                                  parents=tuple(u.version_id for u in updates), strategy="fedavg")
        registry.commit(run_id, [*updates, aggregate], head_round=rnd, head=aggregate.version_id)
        head = aggregate
        if say:
            print(f"round {rnd}", flush=True)


def main(argv: list[str]) -> int:
    command, location, blobs, run_id = argv[:4]
    registry = Registry(location, blobs=None if blobs == "-" else blobs)
    if command == "lock":
        with registry.lock_run(run_id):
            print("locked", flush=True)
            time.sleep(3600)
    elif command == "try-lock":
        try:
            with registry.lock_run(run_id):
                print("locked", flush=True)
        except RunLocked as exc:
            print(f"refused: {exc}", flush=True)
            return 3
    elif command == "write":
        write_rounds(registry, run_id, int(argv[4]), int(argv[5]), say=True)
    else:
        raise SystemExit(f"unknown command {command!r}")
    registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
