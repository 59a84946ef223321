"""A hung node and a killed node in a real deployment: excluded at the round timeout, rounds complete.

Flower's Ray backend waits on a hung or killed ClientApp without a timeout, so these two faults are
tested here, on the Deployment Engine (a SuperLink and four SuperNodes on 127.0.0.1, set up by
``flonnx deploy init``): two good scikit-learn nodes, one told ``fault="hang"`` (it sleeps an hour
before answering a train message) and one ``fault="kill"`` (its ClientApp process SIGKILLs itself
mid-round). ``round-timeout=30``: the coordinator stops waiting after 30 s, records each silent
node with its reason, and commits the round with the two good updates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flonnx.exchange.registry import Registry
from tests.deployment.harness import Consortium, free_ports

pytestmark = [pytest.mark.deployment, pytest.mark.reliability]

GOOD = ("site-a", "site-b")
FAULTY = {"site-hang": "hang", "site-kill": "kill"}
ROUNDS = 2
TIMEOUT = 30  # also bounds the handshake, when each SuperNode starts its ClientApp process


def _flonnx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flonnx", *args], capture_output=True, text=True,
                          timeout=300)


def _write_sites(data: Path, names: list[str]) -> None:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    parts = np.array_split(np.random.default_rng(3).permutation(len(y)), len(names) + 1)
    header = ",".join([*(f"f{i}" for i in range(x.shape[1])), "label"])
    data.mkdir(parents=True)
    for name, part in zip([*names, "holdout"], parts, strict=True):
        lines = [header, *(",".join([*(repr(float(v)) for v in x[i]), str(int(y[i]))]) for i in part)]
        (data / f"{name}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("deploy-faults")
    names = [*GOOD, *FAULTY]
    _write_sites(base / "data", names)
    (base / "spec.toml").write_text(
        'model = "mlp-30-16-2"\ntask = "classification"\n'
        f'evaluate = "{base / "data" / "holdout.csv"}"\nclients = {len(names)}\nrounds = {ROUNDS}\n'
        "min-train-nodes = 2\nevaluate-sites = false\nseed = 0\nstandardize = true\n")
    link_port, *node_ports = free_ports(len(names) + 1)
    result = _flonnx(
        "deploy", "init", str(base / "consortium"), "--hosts", "127.0.0.1,localhost",
        "--nodes", ",".join(names), "--frameworks", "sklearn", "--data-dir", str(base / "data"),
        "--listen", "127.0.0.1", "--port", str(link_port), "--node-port-base", str(node_ports[0]),
        "--spec", str(base / "spec.toml"), "--registry", str(base / "registry"))
    assert result.returncode == 0, result.stdout + result.stderr
    cons = Consortium(base / "consortium")
    try:
        cons.start_superlink()
        for argv in cons.commands["register"].values():
            done = cons.flwr(argv)
            assert done.returncode == 0, done.stdout + done.stderr
        for name, argv in cons.commands["supernode"].items():
            argv = list(argv)
            if name in FAULTY:
                argv[argv.index("--node-config") + 1] += f' fault="{FAULTY[name]}"'
            cons.start(name, argv)
        cons.wait_online(len(names))
        run = cons.flwr([*cons.commands["run"], "--run-config", f"round-timeout='{TIMEOUT}'"],
                        timeout=600)
        (base / "run.log").write_text(run.stdout + run.stderr)
        yield {"cons": cons, "base": base, "run": run}
    finally:
        cons.stop_all()


def test_hung_and_killed_nodes_are_excluded_at_the_timeout_and_every_round_completes(
    faulty_run: dict[str, Any],
) -> None:
    run = faulty_run["run"]
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    with Registry(faulty_run["base"] / "registry", create=False) as reg:
        (info,) = reg.runs()
        records = [v.record for v in reg.versions(info.run_id)]
        heads = reg.heads(info.run_id)
        parents = {r: sorted(reg.record(p).client for p in reg.record(heads[r]).parents)
                   for r in range(1, ROUNDS + 1)}
        assert reg.verify(info.run_id)[1] == []
    rejected = {(r.client, r.round): r.reason for r in records if r.kind.value == "rejected"}

    assert (info.status, info.last_round, info.config["round_timeout"]) == ("completed", ROUNDS, TIMEOUT)
    assert parents == {r: sorted(GOOD) for r in range(1, ROUNDS + 1)}
    for r in range(1, ROUNDS + 1):
        assert rejected[("site-hang", r)] == "no reply before the round timeout"
        # a killed ClientApp process: the SuperNode reports its death, or nothing arrives at all
        killed = rejected[("site-kill", r)]
        assert killed == "no reply before the round timeout" or killed.startswith("client failed:"), killed
