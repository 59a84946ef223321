"""A coordinator to kill: runs (or resumes) a small federation in this process, on a LocalGrid.

``python -m tests.reliability._coordinator REGISTRY [--resume]`` runs :data:`FEDERATION` (3
scikit-learn clients, 4 rounds, FedAvgM so that the strategy has state to lose) into ``REGISTRY``
without Ray, and prints ``{"step": "done", ...}``. With ``--resume`` it first verifies the registry
(as ``flonnx lineage verify --all`` does), then resumes the registry's only run, or starts a run
afresh if the killed process never created one. ``FLONNX_CRASH_AT``
(``exchange/crashpoints.py``) makes it kill itself at a named point.

``--serve`` is what the crash trials use: one process imports flonnx, Flower and scikit-learn once,
then forks a coordinator per trial (:func:`serve`), which saves each trial those seconds of imports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

ROUNDS = 4
NODES = 3
#: the federation every trial runs: small, but with a stateful strategy and every write path
FEDERATION: dict[str, Any] = {
    "num-server-rounds": ROUNDS, "frameworks": f"sklearn:{NODES}", "clients": NODES,
    "local-epochs": 1, "strategy": "fedavgm", "strategy-config": "server-momentum=0.9", "seed": 7,
}


def write_model(path: Path) -> None:
    """The federation's model: an MLP 64-16-10 built with onnx.helper (no torch export to wait for)."""
    import onnx

    from tests.tiny_models import gemm_mlp

    definition, weights = gemm_mlp(64, 16, 10)
    onnx.save(definition.materialize(weights), path)


def _say(step: str, **facts: Any) -> None:
    print(json.dumps({"step": step, **facts}), flush=True)


def run_in_process(registry: Path, resume: str = "", rounds: int | None = None) -> str:
    """Run :data:`FEDERATION` into ``registry`` (or resume its run ``resume``); returns the run id."""
    from flonnx.client.app import app as client_app
    from flonnx.server.app import resumed_settings
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid

    model = registry.parent / "model.onnx"
    if not model.exists():
        write_model(model)
    config = {**FEDERATION, **({"num-server-rounds": rounds} if rounds else {})}
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": NODES,
                                         "model": str(model), **config})
    if resume:
        settings = resumed_settings(replace(settings, resume=resume), config)
    return Federation(LocalGrid(client_app, NODES, dict(FEDERATION)), settings, Reporter()).run()


def resume_in_process(registry: Path, run_id: str, rounds: int | None = None) -> str:
    """Resume ``run_id`` in ``registry`` (with a new total of ``rounds``)."""
    return run_in_process(registry, run_id, rounds)


def _trial(registry: Path, resume: bool) -> tuple[int, dict[str, Any]]:
    """One coordinator process's work: (exit code, facts for the trial)."""
    from flonnx.exchange.registry import Registry

    facts: dict[str, Any] = {}
    run_id = ""
    if resume and (registry / "registry.db").exists():  # else killed before it made one
        with Registry(registry, create=False, migrate=True) as reg:
            checked, problems = reg.verify()
            runs = [info.run_id for info in reg.runs()]
        facts.update(checked=checked, problems=problems, runs_before=len(runs))
        if problems:
            return 1, facts
        if runs:
            (run_id,) = runs
    run_id = run_in_process(registry, run_id)
    with Registry(registry, create=False) as reg:
        facts.update(run_id=run_id, status=reg.run(run_id).status, heads=reg.heads(run_id))
    return 0, facts


def _preload() -> None:
    """Import what a run imports, so that each forked trial starts with it done."""
    import flonnx.client.app
    import flonnx.client.trainers.sklearn_trainer
    import flonnx.exchange.ort
    import flonnx.server.federation  # noqa: F401
    from flonnx.exchange.data.partition import _flower_datasets

    _flower_datasets()


def _child(command: dict[str, Any]) -> None:
    """A forked trial: arm its crash point, run, write its facts; never returns."""
    code = 1
    try:
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)  # the server's stdout carries its own protocol: keep Flower's logs off it
        os.dup2(log, 2)
        from flonnx.exchange import crashpoints

        crashpoints.arm(command.get("crash_at"))
        code, facts = _trial(Path(command["registry"]), bool(command.get("resume")))
        Path(command["result"]).write_text(json.dumps(facts))
    except BaseException:  # noqa: BLE001 - a trial reports every failure through its log and code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> int:
    """Import once, then fork one trial process per JSON command line read from stdin.

    A command is ``{"registry", "resume", "crash_at", "result", "log"}``; the server answers
    ``{"step": "forked", "pid"}`` (the process to kill) and ``{"step": "exited", "returncode"}``.
    """
    _preload()
    _say("ready")
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(command)
        _say("forked", pid=pid)
        _, status = os.waitpid(pid, 0)
        _say("exited", pid=pid, returncode=os.waitstatus_to_exitcode(status))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (the module says what it prints)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("registry", type=Path, nargs="?")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    code, facts = _trial(args.registry, args.resume)
    _say("done", **facts)
    return code


if __name__ == "__main__":
    sys.exit(main())
