"""End to end: `flonnx simulate` on Flower's simulation engine, then the lineage commands.

Two simulations with the same seed (≈25 s each, mostly Ray start-up) serve every assertion here;
the Ctrl-C test adds one run stopped twice and resumed, and compares it with them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from flonnx.exchange.ort import classification_metrics
from tests.digits import digits_holdout

ROOT = Path(__file__).resolve().parents[2]
SEED = 3

pytestmark = pytest.mark.e2e


def flonnx(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "flonnx", *args], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"flonnx {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("registries")
    out: dict[str, object] = {}
    for name in ("A", "B"):
        registry = base / name
        sim = flonnx("simulate", "--seed", str(SEED), "--registry", str(registry))
        listing = json.loads(flonnx("lineage", "ls", "--json", "--registry", str(registry)).stdout)
        out[name] = {"registry": registry, "stdout": sim.stdout, "versions": listing}
    return out


def _aggregates(versions: list[dict]) -> list[dict]:
    return [v for v in versions if v["kind"] == "aggregate"]


def test_simulation_shows_progress_per_round_and_the_final_version(runs) -> None:
    stdout = runs["A"]["stdout"]

    for rnd in range(1, 6):
        assert f"round {rnd}/5 · replies 6/6 (jax 2, sklearn 2, torch 2)" in stdout
    final = _aggregates(runs["A"]["versions"])[-1]["version_id"]
    assert f"final version: {final}" in stdout


def test_reaches_090_test_accuracy_after_five_rounds(runs) -> None:
    final = _aggregates(runs["A"]["versions"])[-1]

    assert final["round"] == 5
    assert final["metrics"]["accuracy"] >= 0.90


def test_same_seed_gives_identical_version_ids_in_every_round(runs) -> None:
    a, b = runs["A"]["versions"], runs["B"]["versions"]

    assert [(v["round"], v["kind"], v["version_id"]) for v in a] == [
        (v["round"], v["kind"], v["version_id"]) for v in b]
    assert a[0]["run_id"] != b[0]["run_id"]


def test_lineage_is_a_dag_from_initial_through_updates_to_aggregates(runs) -> None:
    versions = runs["A"]["versions"]
    by_id = {v["version_id"]: v for v in versions}

    assert [v["kind"] for v in versions[:1]] == ["initial"]
    head = versions[0]["version_id"]
    for aggregate in _aggregates(versions):
        parents = [by_id[p] for p in aggregate["parents"]]
        assert {p["framework"] for p in parents} == {"torch", "jax", "sklearn"}
        assert all(p["kind"] == "client_update" and p["parents"] == [head] for p in parents)
        assert [p["client"] for p in parents] == sorted(p["client"] for p in parents)
        assert aggregate["strategy"] == "fedavg"
        assert aggregate["num_examples"] == sum(p["num_examples"] for p in parents)
        head = aggregate["version_id"]


def test_json_listing_has_the_documented_fields(runs) -> None:
    documented = {"run_id", "version_id", "created_at", "schema", "kind", "round", "parents",
                  "definition_id", "weights_id", "framework", "framework_version", "client",
                  "num_examples", "metrics", "seed", "strategy", "strategy_config", "environment",
                  "reason"}

    for version in runs["A"]["versions"]:
        assert set(version) == documented


def test_exported_final_version_is_valid_and_reproduces_the_recorded_accuracy(runs, tmp_path) -> None:
    final = _aggregates(runs["A"]["versions"])[-1]
    path = tmp_path / "final.onnx"

    flonnx("export", final["version_id"][:10], "-o", str(path), "--registry", str(runs["A"]["registry"]))

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    metrics = classification_metrics(model, *digits_holdout())
    assert metrics["accuracy"] == final["metrics"]["accuracy"]
    card = {p.key: p.value for p in model.metadata_props}
    assert card["flonnx.version_id"] == final["version_id"]


def test_verify_passes_then_names_a_blob_with_one_changed_byte(runs, tmp_path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(runs["A"]["registry"], copy)
    ok = flonnx("lineage", "verify", "--registry", str(copy))
    assert ok.returncode == 0 and "ok" in ok.stdout
    victim = _aggregates(runs["A"]["versions"])[2]["weights_id"]
    blob = copy / "blobs" / victim[:2] / victim
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x10
    blob.write_bytes(bytes(data))

    bad = flonnx("lineage", "verify", "--registry", str(copy), check=False)

    assert bad.returncode == 1
    assert f"weights blob {victim[:12]}" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_version_prefix_must_be_unique(runs) -> None:
    result = flonnx("export", "", "-o", "x.onnx", "--registry", str(runs["A"]["registry"]), check=False)

    assert result.returncode == 1
    assert "ambiguous" in result.stderr


def test_bad_input_fails_before_starting_flower(tmp_path) -> None:
    unknown = flonnx("simulate", "nope", "--registry", str(tmp_path), check=False)
    rounds = flonnx("simulate", "--rounds", "0", "--registry", str(tmp_path), check=False)
    missing = flonnx("lineage", "ls", "--registry", str(tmp_path / "absent"), check=False)

    assert unknown.returncode == 1
    assert "no built-in scenario of that name (built-in: diabetes, digits-cnn" in unknown.stderr
    assert rounds.returncode == 1 and "--rounds must be at least 1" in rounds.stderr
    assert missing.returncode == 1 and "no flonnx registry at" in missing.stderr
    assert not any("Traceback" in r.stderr for r in (unknown, rounds, missing))


def test_exported_model_predicts_like_the_registry_weights(runs, tmp_path) -> None:
    from flonnx.exchange.export import export_version
    from flonnx.exchange.registry import Registry

    registry = Registry(runs["A"]["registry"], create=False)
    final = _aggregates(runs["A"]["versions"])[-1]
    model = export_version(registry, final["version_id"])
    weights = registry.get_weights(final["weights_id"])

    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, value in weights.items():
        np.testing.assert_array_equal(stored[name], value)


def test_cnn_scenario_reaches_093_within_ten_rounds_with_torch_and_jax(tmp_path) -> None:
    registry = tmp_path / "cnn"

    flonnx("simulate", "digits-cnn", "--registry", str(registry))

    versions = json.loads(flonnx("lineage", "ls", "--json", "--registry", str(registry)).stdout)
    aggregates = _aggregates(versions)
    by_id = {v["version_id"]: v for v in versions}
    assert len(aggregates) == 10
    assert max(a["metrics"]["accuracy"] for a in aggregates) >= 0.93
    assert aggregates[-1]["metrics"]["accuracy"] >= 0.93
    for aggregate in aggregates:
        assert {by_id[p]["framework"] for p in aggregate["parents"]} == {"torch", "jax"}


# -- Ctrl-C and SIGTERM: stopped within seconds, nothing of the round in progress kept, resumable --

def _start(log: Path, *args: str) -> subprocess.Popen[str]:
    """``flonnx ARGS`` in the background, its stdout and stderr in ``log``.out / .err."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    out, err = log.with_suffix(".out").open("w"), log.with_suffix(".err").open("w")
    return subprocess.Popen([sys.executable, "-m", "flonnx", *args], cwd=ROOT, env=env, text=True,
                            stdout=out, stderr=err)


def _progress(registry: Path) -> tuple[str | None, int]:
    """(status, last committed round) of the registry's newest run; (None, -1) before there is one."""
    from flonnx.exchange.errors import FlonnxError
    from flonnx.exchange.registry import Registry

    try:
        with Registry(registry, create=False) as reg:
            infos = reg.runs()
            return (infos[-1].status, max(reg.heads(infos[-1].run_id), default=-1)) if infos else (None, -1)
    except FlonnxError:  # not created yet
        return None, -1


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Ray's, for a driver)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _stop(process: subprocess.Popen[str], sig: int, when: Callable[[], bool]) -> tuple[int, float, set[int]]:
    """Send ``sig`` once ``when()`` holds: (exit code, seconds to exit, the children it had)."""
    try:
        deadline = time.monotonic() + 600
        while not when():
            assert process.poll() is None, f"exited {process.returncode} before the signal"
            assert time.monotonic() < deadline, "the run did not get there within 600 s"
            time.sleep(0.1)
        children = _children(process.pid)
        process.send_signal(sig)
        sent = time.monotonic()
        code = process.wait(timeout=30)
        return code, time.monotonic() - sent, children
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _gone(pids: set[int], seconds: float = 15) -> set[int]:
    """Those of ``pids`` still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (alive := {p for p in pids if Path(f"/proc/{p}").exists()}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def test_ctrl_c_then_sigterm_stop_a_run_within_seconds_and_resume_ends_on_the_uninterrupted_version(
    runs, tmp_path,
) -> None:
    from flonnx.exchange.registry import Registry

    registry = tmp_path / "stopped"
    simulate = _start(tmp_path / "simulate", "simulate", "--seed", str(SEED), "--registry", str(registry))
    sigint = _stop(simulate, signal.SIGINT, lambda: _progress(registry)[1] >= 2)
    with Registry(registry, create=False) as reg:
        (info,) = reg.runs()
        run_id, after_sigint = info.run_id, info.status
        kept = max(reg.heads(run_id))
        kept_rounds = {v.record.round for v in reg.versions(run_id)}
    resume = _start(tmp_path / "resume", "resume", run_id, "--registry", str(registry))
    sigterm = _stop(resume, signal.SIGTERM, lambda: _progress(registry)[0] == "running")
    after_sigterm = _progress(registry)
    finished = flonnx("resume", run_id, "--registry", str(registry))
    with Registry(registry, create=False) as reg:
        final = reg.heads(run_id)

    code, seconds, ray = sigint
    assert (code, after_sigint) == (130, "interrupted") and seconds < 30
    assert 2 <= kept < 5 and kept_rounds == set(range(kept + 1))  # nothing of the round in progress
    err = (tmp_path / "simulate.err").read_text()
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "stopped by" in line] == [
        f"stopped by SIGINT: run {run_id} is interrupted after round {kept} of 5 (the round in progress "
        f"was not committed); continue it with: flonnx resume {run_id} --registry {registry}"]
    assert ray and not _gone(ray), "Ray's processes outlived the interrupted driver"
    code, seconds, _ = sigterm
    assert (code, after_sigterm[0]) == (143, "interrupted") and seconds < 30
    assert f"stopped by SIGTERM: run {run_id} is interrupted" in (tmp_path / "resume.err").read_text()
    assert f"resuming after round {after_sigterm[1]}" in finished.stdout
    assert final[5] == _aggregates(runs["A"]["versions"])[-1]["version_id"]
