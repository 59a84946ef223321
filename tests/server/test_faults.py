"""Every injected fault is excluded and recorded with its reason; the other clients' rounds complete.

One in-process federation (a LocalGrid, no Ray) of three honest nodes and one node per fault of
:data:`flonnx.exchange.spec.FAULTS` (``fault=`` in each node's config, as a real SuperNode would be
told), two rounds: each fault's rejections are asserted by parameter. A hung node is tested on a
grid that stops waiting at the round timeout, as Flower's Deployment Engine does; a killed node only
in deployment (tests/deployment/test_faults.py), never in this process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message

from flonnx.client.app import make_client_app
from flonnx.client.faults import FAULTS, MESSAGE_FAULTS, TRAINER_FAULTS, fault_of, faulty
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import BYZANTINE_ATTACKS, FederationSpec, SpecError, byzantine_clients, parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

pytestmark = pytest.mark.reliability

HONEST = 3
#: fault -> the reason recorded for each round it is rejected in (round 1 and 2)
EXPECTED: dict[str, tuple[str | None, ...]] = {
    "raise": (r"^client failed: RuntimeError: injected failure",) * 2,
    "nan": (r"tensor 'fc1\.bias': 1 non-finite values \(NaN or inf\)",) * 2,
    "inf": (r"tensor 'fc1\.bias': 1 non-finite values \(NaN or inf\)",) * 2,
    "garbage": (r"^tensor 'fc1\.\w+' does not decode: ",) * 2,
    "truncated": (r"^tensor 'fc1\.\w+' does not decode: EOF",) * 2,
    "nan-metric": (r"^metric 'train-loss' is not a finite number \(nan\)$",) * 2,
    "metric-type": (r"^metric 'train-loss' is a list, not a number$",) * 2,
    "lineage-oversized": (r"^lineage field 'framework' has 1048576 characters; at most 256",) * 2,
    "lineage-malformed": (r"^lineage field 'seed' must be an integer, got 'not-a-seed'$",) * 2,
    "wrong-shape": (r"tensor 'fc1\.bias': expected shape \[32\], got \[31\]$",) * 2,
    "wrong-name": (r"missing tensors: fc1\.bias .*unexpected tensors not in the definition: "
                   r"fc1\.bias\.injected",) * 2,
    "wrong-dtype": (r"tensor 'fc1\.bias': expected dtype float32, got float64$",) * 2,
    "stale-base": (r"^update is based on 000000000000, expected ", r"^update is based on \w{12}, expected "),
    "replay": (None, r"^update is based on \w{12}, expected "),  # round 1 is answered honestly
}
#: Attacks pass every check by design (robust aggregation limits them: benchmarks/byzantine.py).
ACCEPTED = BYZANTINE_ATTACKS
ROUNDS = 2


def _spec(clients: int, **extra: Any) -> FederationSpec:
    return parse_spec({"model": "digits-mlp", "clients": clients, "frameworks": f"sklearn:{clients}",
                       "rounds": ROUNDS, "standardize": False, "data": {"source": "digits"},
                       "train": {"local-epochs": 1}, **extra}, source="faults")


def _run(registry: Path, grid: Any, spec: FederationSpec, **config: Any) -> str:
    settings = Settings.from_run_config({"registry": str(registry),
                                         "min-available-nodes": len(grid.contexts), **config}, spec=spec)
    return Federation(grid, settings, Reporter()).run()


FAULTY = sorted(set(FAULTS) - {"hang", "kill"})


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three honest nodes and one node per fault (except hang and kill), two rounds."""
    registry = tmp_path_factory.mktemp("faults")
    n = HONEST + len(FAULTY)
    spec = _spec(n)
    configs = [{"partition-id": i, "num-partitions": n, "client-id": f"honest-{i}"} for i in range(HONEST)]
    configs += [{"partition-id": HONEST + i, "num-partitions": n, "client-id": fault, "fault": fault}
                for i, fault in enumerate(FAULTY)]
    run_id = _run(registry, LocalGrid(make_client_app(spec), n, node_configs=configs), spec)
    with Registry(registry) as reg:
        versions = [v.record for v in reg.versions(run_id)]
        heads = reg.heads(run_id)
        status = reg.run(run_id).status
        parents = {rnd: sorted(reg.record(p).client for p in reg.record(heads[rnd]).parents)
                   for rnd in range(1, ROUNDS + 1)}
    rejected = {(r.round, r.client): r.reason for r in versions if r.kind is VersionKind.REJECTED}
    return {"status": status, "rejected": rejected, "parents": parents}


def test_the_fault_table_covers_the_spec_names() -> None:
    assert set(FAULTS) == set(TRAINER_FAULTS) | set(MESSAGE_FAULTS)
    assert set(EXPECTED) | set(ACCEPTED) | {"hang", "kill"} == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_a_faulty_reply_is_rejected_with_its_reason(federation: dict[str, Any], fault: str) -> None:
    for rnd, pattern in enumerate(EXPECTED[fault], start=1):
        reason = federation["rejected"].get((rnd, fault))
        if pattern is None:
            assert reason is None and fault in federation["parents"][rnd]
        else:
            assert reason is not None and re.search(pattern, reason), (rnd, reason)
            assert fault not in federation["parents"][rnd]


def test_every_round_completes_with_the_honest_clients_and_the_attackers(
        federation: dict[str, Any]) -> None:
    assert federation["status"] == "completed"
    honest = [f"honest-{i}" for i in range(HONEST)]
    assert federation["parents"][1] == sorted([*honest, *ACCEPTED, "replay"])
    assert federation["parents"][2] == sorted([*honest, *ACCEPTED])
    assert {client for _, client in federation["rejected"]} == set(EXPECTED)


class _TimedGrid(LocalGrid):
    """A LocalGrid that, like Flower's Deployment Engine, stops waiting at ``timeout``.

    A node it stopped waiting for goes on in its thread; :meth:`join` waits for every such thread,
    so that none trains or exports beside the tests that follow.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[threading.Thread] = []

    def join(self, timeout: float) -> list[threading.Thread]:
        """Wait up to ``timeout`` seconds in all for every node thread; the ones still running."""
        deadline = time.monotonic() + timeout
        for thread in self.started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self.started if t.is_alive()]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies: list[Message] = []
        threads = []
        for message in messages:
            def deliver(m: Message = message) -> None:
                replies.extend(LocalGrid.send_and_receive(self, [m]))
            thread = threading.Thread(target=deliver, daemon=True)
            thread.start()
            threads.append(thread)
        self.started += threads
        deadline = time.monotonic() + (timeout or 60.0)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return list(replies)


def test_a_hung_node_is_rejected_at_the_round_timeout_which_the_run_records(tmp_path: Path) -> None:
    spec = _spec(3)
    configs: list[dict[str, Any]] = [{"partition-id": i, "num-partitions": 3} for i in range(3)]
    configs[2].update({"fault": "hang", "fault-seconds": 4.0})
    grid = _TimedGrid(make_client_app(spec), 3, node_configs=configs)

    run_id = _run(tmp_path, grid, spec, **{"round-timeout": 2.0})
    assert grid.join(timeout=60.0) == []  # the hung node wakes up and finishes after the run

    with Registry(tmp_path) as reg:
        rejected = [(v.record.round, v.record.client, v.record.reason) for v in reg.versions(run_id)
                    if v.record.kind is VersionKind.REJECTED]
        run = reg.run(run_id)
    assert run.status == "completed"
    assert run.config["round_timeout"] == 2.0
    assert rejected == [(r, "partition-2", "no reply before the round timeout") for r in (1, 2)]


def test_kill_refuses_to_run_in_a_test_process(tmp_path: Path) -> None:
    spec = _spec(2)
    configs: list[dict[str, Any]] = [{"partition-id": i, "num-partitions": 2} for i in range(2)]
    configs[1]["fault"] = "kill"
    grid = LocalGrid(make_client_app(spec), 2, node_configs=configs)

    run_id = _run(tmp_path, grid, spec, **{"min-train-nodes": 1, "num-server-rounds": 1})

    with Registry(tmp_path) as reg:
        (rejected,) = [v.record for v in reg.versions(run_id) if v.record.kind is VersionKind.REJECTED]
    assert rejected.reason == ("client failed: RuntimeError: fault=kill runs in deployment only (a real "
                               "SuperNode's ClientApp process)")


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(FlonnxError, match="unknown fault 'melt'"):
        faulty(object(), "melt")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="faults"):
        _spec(3, faults={"1": "melt"})


def test_byzantine_clients_are_a_seeded_share() -> None:
    spec = _spec(20, byzantine={"share": 0.2, "attack": "sign-flip", "seed": 3})

    chosen = byzantine_clients(spec, 20)

    assert len(chosen) == 4 and set(chosen.values()) == {"sign-flip"}
    assert chosen == byzantine_clients(_spec(20, byzantine={"share": 0.2, "attack": "sign-flip",
                                                            "seed": 3}), 20)
    assert chosen != byzantine_clients(_spec(20, byzantine={"share": 0.2, "attack": "sign-flip",
                                                            "seed": 4}), 20)
    partition = next(iter(chosen))
    assert fault_of({"partition-id": partition, "num-partitions": 20}, spec) == "sign-flip"
    assert fault_of({"partition-id": partition, "num-partitions": 20, "fault": "nan"}, spec) == "nan"
    assert spec.with_overrides({}).byzantine == spec.byzantine  # survives the recorded form


@pytest.mark.parametrize(("table", "message"), [
    ({"share": 0.6, "attack": "sign-flip"}, r"byzantine\.share'.*\[0\.0, 0\.5\]"),
    ({"share": 0.2, "attack": "melt"}, r"byzantine\.attack'.*'melt' is not one of"),
    ({"share": 0.2}, r"byzantine\.attack'.*required"),
    ({"share": 0.2, "attack": "noise", "sigma": -1}, r"byzantine\.sigma'"),
    ({"share": 0.2, "attack": "noise", "colour": 1}, r"unknown key\(s\) byzantine\.colour"),
    ("yes", r"key 'byzantine': expected a table"),
])
def test_an_invalid_byzantine_table_is_refused(table: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(20, byzantine=table)
