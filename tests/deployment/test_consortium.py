"""A real federation on Flower's Deployment Engine, on 127.0.0.1, set up by `flonnx deploy init`.

One SuperLink with TLS (the certificates `deploy init` made), node authentication and a persistent
database; five registered SuperNodes, each with its own port, key, framework and CSV file: torch, jax
and scikit-learn nodes with good data, one node whose CSV is malformed and one whose site policy
refuses the definition; plus one node whose key was never registered. `flwr run` of the app folder
`deploy init` wrote, for 3 rounds, once into a directory registry and once into PostgreSQL.

The consortium is shared by the tests of this module (each SuperNode start costs seconds and each
run a minute or two); every process is stopped by its process group at the end.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flonnx.exchange.registry import Registry
from tests.deployment.harness import BIN, Consortium, free_ports

pytestmark = pytest.mark.deployment

GOOD = {"hospital-a": "torch", "hospital-b": "jax", "hospital-c": "sklearn"}
BROKEN, STRICT = "hospital-broken", "hospital-strict"
NODES = {**GOOD, BROKEN: "sklearn", STRICT: "sklearn"}
ROUNDS = 3


def _flonnx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flonnx", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def _write_sites(data: Path) -> dict[str, np.ndarray]:
    """Breast-cancer rows split over the three good sites and the coordinator's hold-out."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(y))
    parts = np.array_split(order, 4)
    header = ",".join([*(f"f{i}" for i in range(x.shape[1])), "label"])
    rows: dict[str, np.ndarray] = {}
    data.mkdir(parents=True)
    for name, part in zip([*GOOD, "holdout"], parts, strict=True):
        lines = [header, *(",".join([*(repr(float(v)) for v in x[i]), str(int(y[i]))]) for i in part)]
        (data / f"{name}.csv").write_text("\n".join(lines) + "\n")
        rows[name] = x[part]
    # the same columns, but row 3 holds a word where a number belongs
    good = (data / "hospital-a.csv").read_text().splitlines()
    cells = good[3].split(",")
    cells[5] = "unknown"
    (data / f"{BROKEN}.csv").write_text("\n".join([*good[:3], ",".join(cells), *good[4:40]]) + "\n")
    (data / f"{STRICT}.csv").write_text("\n".join(good[:60]) + "\n")
    return rows


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("deploy")
    rows = _write_sites(base / "data")
    (base / "spec.toml").write_text(
        'model = "mlp-30-16-2"\ntask = "classification"\n'
        f'evaluate = "{base / "data" / "holdout.csv"}"\nclients = {len(NODES)}\nrounds = {ROUNDS}\n'
        "seed = 0\nstandardize = true\n")
    (base / "strict-policy.toml").write_text(f'definitions = ["{"0" * 64}"]\n')
    link_port, *node_ports = free_ports(len(NODES) + 2)
    result = _flonnx(
        "deploy", "init", str(base / "consortium"), "--hosts", "127.0.0.1,localhost",
        "--nodes", ",".join(NODES), "--frameworks", ",".join(NODES.values()),
        "--data-dir", str(base / "data"), "--listen", "127.0.0.1", "--port", str(link_port),
        "--node-port-base", str(node_ports[0]), "--spec", str(base / "spec.toml"),
        "--registry", str(base / "registry"))
    assert result.returncode == 0, result.stdout + result.stderr
    cons = Consortium(base / "consortium")
    try:
        cons.start_superlink()
        registered = {}
        for name, argv in cons.commands["register"].items():
            done = cons.flwr(argv)
            assert done.returncode == 0, done.stdout + done.stderr
            registered[name] = done.stdout
        for name, argv in cons.commands["supernode"].items():
            argv = list(argv)
            config = argv.index("--node-config") + 1
            argv[config] += f' audit="{base / "audit" / name}"'
            if name == STRICT:
                argv[config] += f' policy="{base / "strict-policy.toml"}"'
            cons.start(name, argv)
        cons.wait_online(len(NODES))

        # a node whose key nobody registered: Flower refuses it (exit code 305)
        keys = _flonnx("deploy", "keygen", "rogue", "-o", str(base / "rogue"))
        assert keys.returncode == 0, keys.stderr
        rogue = list(cons.commands["supernode"]["hospital-a"])
        rogue[rogue.index("--auth-supernode-private-key") + 1] = str(base / "rogue" / "rogue.key")
        rogue[rogue.index("--node-config") + 1] = rogue[rogue.index("--node-config") + 1].replace(
            '"hospital-a"', '"rogue"')
        rogue[rogue.index("--port") + 1] = str(node_ports[-1])
        rogue_proc = cons.start("rogue", rogue)

        run = cons.flwr(cons.commands["run"], timeout=900)
        rogue_code = rogue_proc.wait(timeout=120)
        yield {"cons": cons, "base": base, "run": run, "rows": rows, "rogue_code": rogue_code,
               "registered": registered}
    finally:
        cons.stop_all()


def _versions(registry: Registry) -> list[tuple[int, str, str, str]]:
    (run,) = registry.runs()
    return [(v.record.round, v.record.kind.value, v.record.client, v.version_id)
            for v in registry.versions(run.run_id)]


def test_a_tls_federation_with_node_authentication_runs_every_round_with_three_frameworks(
    consortium: dict[str, Any],
) -> None:
    run = consortium["run"]
    output = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, output
    assert f"round {ROUNDS}/{ROUNDS}" in run.stdout, output
    with Registry(consortium["base"] / "registry", create=False) as reg:
        (info,) = reg.runs()
        assert (info.status, info.last_round) == ("completed", ROUNDS)
        heads = reg.heads(info.run_id)
        assert sorted(heads) == list(range(ROUNDS + 1))
        versions = reg.versions(info.run_id)
        by_id = {v.version_id: v for v in versions}
        for round_ in range(1, ROUNDS + 1):
            aggregate = by_id[heads[round_]].record
            contributors = {by_id[p].record.client: by_id[p].record.framework for p in aggregate.parents
                            if by_id[p].record.kind.value == "client_update"}
            assert contributors == GOOD, (round_, contributors)
        assert reg.verify(info.run_id)[1] == []
    verify = _flonnx("lineage", "verify", "--registry", str(consortium["base"] / "registry"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_bad_data_and_a_refusing_policy_are_recorded_while_the_others_complete(
    consortium: dict[str, Any],
) -> None:
    with Registry(consortium["base"] / "registry", create=False) as reg:
        (info,) = reg.runs()
        records = [v.record for v in reg.versions(info.run_id)]
    rejected = {(r.client, r.round): r.reason for r in records if r.kind.value == "rejected"}
    updates = Counter(r.client for r in records if r.kind.value == "client_update")

    assert updates == {name: ROUNDS for name in GOOD}
    assert {client for client, _ in rejected} == {BROKEN, STRICT}
    broken = rejected[(BROKEN, 0)]
    assert broken == ("refused at the handshake: column 'f5', row 3: not a number; declare it "
                      "categorical or exclude it"), broken
    strict = rejected[(STRICT, 0)]
    assert strict.startswith("refused at the handshake: site policy: definition "), strict
    assert strict.endswith("approves 1 definition)"), strict
    for round_ in range(1, ROUNDS + 1):  # refused again, before training, every round it is sampled
        again = broken.replace("refused at the handshake", "client refused to train")
        assert rejected[(BROKEN, round_)] == again
        assert "site policy: definition" in rejected[(STRICT, round_)]


def test_a_node_whose_key_is_not_registered_is_refused_and_never_in_lineage(
    consortium: dict[str, Any],
) -> None:
    # Flower logs its exit code 305 (authentication refused); the process itself exits 1
    log = consortium["cons"].log("rogue")
    assert consortium["rogue_code"] != 0 and "Exit Code: 305" in log, log[-2000:]
    with Registry(consortium["base"] / "registry", create=False) as reg:
        (info,) = reg.runs()
        clients = {v.record.client for v in reg.versions(info.run_id)}
    assert "rogue" not in clients
    assert clients >= set(NODES)


def test_every_update_records_the_nodes_flonnx_version_and_the_app_bundle(
    consortium: dict[str, Any],
) -> None:
    from importlib.metadata import version

    with Registry(consortium["base"] / "registry", create=False) as reg:
        (info,) = reg.runs()
        updates = [v.record for v in reg.versions(info.run_id) if v.record.kind.value == "client_update"]
    bundles = {u.environment.get("bundle") for u in updates}
    assert {u.environment.get("flonnx") for u in updates} == {version("flonnx")}
    assert len(bundles) == 1 and all(b and len(b) == 64 for b in bundles), bundles


def test_no_row_of_any_site_leaves_it(consortium: dict[str, Any]) -> None:
    """Every message a node sent (its audit log) is free of its rows, as text and as float bytes."""
    base, rows = consortium["base"], consortium["rows"]
    for name in GOOD:
        files = sorted((base / "audit" / name).rglob("*"))
        blob = b"".join(f.read_bytes() for f in files if f.is_file())
        assert len(files) >= ROUNDS, f"{name} wrote no audit log"
        lines = (base / "data" / f"{name}.csv").read_text().splitlines()[1:]
        for line, row in zip(lines, rows[name], strict=True):
            features = line.rsplit(",", 1)[0]
            assert features.encode() not in blob
            for dtype in (np.float32, np.float64):
                assert row.astype(dtype).tobytes() not in blob
        assert hashlib.sha256(blob).hexdigest()  # the log is readable bytes


def test_the_same_federation_on_postgresql_gives_the_same_version_ids(
    consortium: dict[str, Any], postgres_db: str,
) -> None:
    cons, base = consortium["cons"], consortium["base"]
    run = cons.flwr([*cons.commands["run"], "--run-config",
                     f"registry='{postgres_db}' blobs='{base / 'pg-blobs'}'"], timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]

    with Registry(base / "registry", create=False) as sqlite_reg:
        expected = _versions(sqlite_reg)
    with Registry(postgres_db, blobs=str(base / "pg-blobs"), create=False) as pg:
        assert _versions(pg) == expected
        (info,) = pg.runs()
        assert pg.verify(info.run_id)[1] == []


def test_a_node_key_is_rotated_and_the_old_key_unregistered(consortium: dict[str, Any]) -> None:
    cons, base = consortium["cons"], consortium["base"]
    name = "hospital-c"
    before = cons.node_ids()
    keys = _flonnx("deploy", "keygen", name, "-o", str(base / "rotated"))
    assert keys.returncode == 0, keys.stderr
    register = cons.flwr([str(BIN / "flwr"), "supernode", "register", str(base / "rotated" / f"{name}.pub"),
                          cons.doc["connection"]])
    assert register.returncode == 0, register.stdout + register.stderr
    new_ids = set(cons.node_ids()) - set(before)
    assert len(new_ids) == 1
    old_argv = list(cons.commands["supernode"][name])
    new_argv = list(old_argv)
    new_argv[new_argv.index("--auth-supernode-private-key") + 1] = str(base / "rotated" / f"{name}.key")

    cons.stop(name)
    cons.start(f"{name}-rotated", new_argv)
    cons.wait_online(len(NODES))
    assert cons.node_ids()[new_ids.pop()] == "online"

    # the old key's node id: the one registered for hospital-c before (register printed it)
    old_id = next(i for i in before if str(i) in consortium["registered"][name])
    unregister = cons.flwr([str(BIN / "flwr"), "supernode", "unregister", str(old_id),
                            cons.doc["connection"]])
    assert unregister.returncode == 0, unregister.stdout + unregister.stderr
    assert old_id not in cons.node_ids() or cons.node_ids()[old_id] != "online"

    cons.stop(f"{name}-rotated")
    old = cons.start(f"{name}-old-key", old_argv)
    code, log = old.wait(timeout=120), cons.log(f"{name}-old-key")
    assert code != 0 and "Exit Code: 305" in log, log[-2000:]
