"""Run a federation spec on Flower's Simulation Engine (Ray), in this process.

SIGINT and SIGTERM stop a simulation within seconds (:mod:`flonnx.server.stopping`): the round in
progress is not committed, the run is marked ``interrupted``, Ray is shut down and
:class:`~flonnx.server.stopping.Interrupted` is raised. This module starts Ray itself, before Flower
would, because ``ray.init`` replaces the driver's SIGTERM handler; the stop handlers go in after it.

Without ``verbose``, Flower's and Ray's logs stay quiet: a client that fails or refuses is reported
once, as one line of the round's progress; Flower would also log each failure with two tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.spec import FederationSpec, assign_frameworks
from flonnx.server.progress import Reporter
from flonnx.server.stopping import Interrupted, StopRequest, stop_on_signals

__all__ = ["SimulationFailed", "offline_environment", "plan", "simulate"]


class SimulationFailed(FlonnxError):
    """At least one run of a simulation failed; ``run_ids`` and ``errors`` say which and why."""

    def __init__(self, message: str, run_ids: list[str], errors: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.run_ids = run_ids
        self.errors = errors


def offline_environment() -> None:
    """Flower settings for machines without internet (unless the user set them already)."""
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plan(spec: FederationSpec) -> dict[str, Any]:
    """The simulated federation: per client its framework and partition summary (recorded, printed)."""
    from flonnx.exchange.sources import partition_plan, simulated_clients

    n = simulated_clients(spec)
    frameworks = assign_frameworks(spec, n)
    parts = partition_plan(spec)
    faults = dict(spec.faults)
    clients = [{"client": f"partition-{i}", "framework": frameworks[i], **parts[i],
                **({"fault": faults[i]} if i in faults else {})} for i in range(n)]
    return {"clients": clients, "num_clients": n}


def simulate(
    spec: FederationSpec,
    *,
    overrides: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    verbose: bool = False,
    simulation: dict[str, Any] | None = None,
) -> list[str]:
    """Run ``spec`` with run-config ``overrides``; returns the run ids (one per strategy).

    ``simulation`` is the :func:`plan` (computed here if not given); it is recorded with each run.

    Raises:
        SimulationFailed: a run failed (the others still ran; their ids are on the exception).
        Interrupted: SIGINT or SIGTERM stopped it (the module says how).
        FlonnxError: the ServerApp did not run at all.
    """
    offline_environment()
    from flwr.simulation import run_simulation

    from flonnx.client.app import make_client_app
    from flonnx.server.app import make_server_app

    simulation = simulation or plan(spec)
    clients = int(simulation["num_clients"])
    config = {"min-available-nodes": clients, **(overrides or {})}
    result: dict[str, Any] = {"simulation": simulation}
    stop = StopRequest()
    server_app = make_server_app(config, reporter, result, spec=spec, stop=stop)
    init_args: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": verbose}
    with warnings.catch_warnings(), _quiet_flower(verbose), stop_on_signals(stop):
        warnings.simplefilter("ignore", DeprecationWarning)
        if not verbose:  # e.g. Ray's tip about a future default for GPUs, at each start
            warnings.simplefilter("ignore", FutureWarning)
        try:
            _start_ray(init_args)
            with stop_on_signals(stop):  # again: ray.init replaced the SIGTERM handler
                stop.check()
                run_simulation(
                    server_app=server_app,
                    client_app=make_client_app(spec),
                    num_supernodes=clients,
                    backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                    "init_args": init_args},
                    verbose_logging=verbose,
                )
        except KeyboardInterrupt:  # a second signal: Ray is being torn down, the run is stopping
            stop.request()
            _wait_for_server_app(result)
            raise _interruption(result, stop) from None
        except Interrupted:
            raise _interruption(result, stop) from None
        finally:
            _stop_ray()
    run_ids = [str(r) for r in result.get("run_ids", [])]
    errors: dict[str, BaseException] = dict(result.get("errors", {}))
    if "config" in errors:
        error = errors["config"]
        raise error if isinstance(error, FlonnxError) else FlonnxError(f"invalid run: {error!r}")
    if errors:
        lines = "; ".join(f"{key}: {exc}" for key, exc in errors.items())
        raise SimulationFailed(f"{len(errors)} run(s) failed: {lines}", run_ids, errors)
    if not run_ids:
        raise FlonnxError("the simulation ended without running the ServerApp (see the log above)")
    if spec.local_baseline and not config.get("resume"):
        _compare_local(spec, str(config.get("registry", "runs")), run_ids, reporter,
                       str(config.get("blobs", "")) or None)
    return run_ids


def _interruption(result: dict[str, Any], stop: StopRequest) -> Interrupted:
    """The run a stop ended (with its last round), or a stop before any run was recorded."""
    named = [e for e in result.get("errors", {}).values() if isinstance(e, Interrupted)]
    return named[0] if named else Interrupted(stop.signum)


def _wait_for_server_app(result: dict[str, Any], seconds: float = 30.0) -> None:
    """Let the ServerApp's thread, which was asked to stop, mark its run before this process exits."""
    thread = result.get("thread")
    if thread is not None:
        thread.join(seconds)


def _start_ray(init_args: dict[str, Any]) -> None:
    """Start Ray as Flower's Ray backend would (which then uses it), unless it is running."""
    import ray

    if ray.is_initialized():
        return
    # as Flower does: Ray's workers import what this process can (e.g. a module:Class strategy)
    pythonpath = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, include_dashboard=False,
             **init_args)


def _stop_ray() -> None:
    """Shut Ray down if Flower did not (it does when its simulation ends normally)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


@contextmanager
def _quiet_flower(verbose: bool) -> Iterator[None]:
    """Unless ``verbose``: only Flower's critical messages for the block.

    Flower logs each client failure (a refusal the docs call normal, an injected fault) at ERROR
    with two tracebacks; flonnx reports each as one line of the round's progress.
    """
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _compare_local(spec: FederationSpec, registry: str, run_ids: list[str],
                   reporter: Reporter | None, blobs: str | None = None) -> None:
    """Train each client alone, print federated vs mean local-only, record it with every run."""
    from flonnx.exchange.registry import Registry
    from flonnx.simulations.baseline import local_baseline

    baseline = local_baseline(spec, registry, run_ids[0], blobs)
    if not baseline:
        return
    metric = baseline["metric"]
    with Registry(registry, blobs=blobs) as reg:
        for run_id in run_ids:
            with reg.lock_run(run_id):
                reg.annotate_run(run_id, "local_baseline", baseline)
            head = reg.heads(run_id)
            federated = reg.record(head[max(head)]).metrics.get(metric, float("nan"))
            line = (f"{metric}: federated {federated:.4f} (run {run_id}) vs mean local-only "
                    f"{baseline['mean']:.4f} (each client alone for {baseline['epochs']} epochs: "
                    + ", ".join(f"{k} {c['framework']} {c['metrics'][metric]:.3f}"
                                for k, c in baseline["clients"].items()) + ")")
            if reporter is not None:
                reporter.note(line)
            else:
                print(line)
