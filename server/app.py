"""The flonnx ``ServerApp`` (``[tool.flwr.app.components] serverapp = "flonnx.server.app:app"``).

Run config ``strategy`` may list several strategies (``"fedavg fedadam"``): the ServerApp then runs
one registry run per strategy, one after the other on the same grid, so a comparison pays for the
simulation engine's start-up once. ``resume = "RUN [RUN …]"`` continues recorded runs instead, one
after the other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from flonnx.exchange.registry import Registry
from flonnx.exchange.signing import load_signer
from flonnx.exchange.spec import FederationSpec
from flonnx.exchange.writable import check_registry_writable
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings, check_min_train_nodes, plan_runs
from flonnx.server.stopping import Interrupted, StopRequest

__all__ = ["app", "make_server_app", "resumed_settings", "run_plan"]

_log = logging.getLogger(__name__)


def resumed_settings(requested: Settings, config: Mapping[str, Any]) -> Settings:
    """The stored settings of run ``requested.resume``, with a new total of rounds if one was given."""
    with Registry(requested.registry, create=False, migrate=True,
                  blobs=requested.blobs or None) as registry:
        stored = Settings.from_json(registry.run(requested.resume).config)
    rounds = requested.rounds if "num-server-rounds" in config else stored.rounds
    resumed = replace(stored.with_rounds(rounds), registry=requested.registry, blobs=requested.blobs,
                      resume=requested.resume, signing_key=requested.signing_key)
    if "min-train-nodes" in config:  # e.g. continue a failed run with fewer required updates
        needed = check_min_train_nodes(config["min-train-nodes"], resumed.min_available_nodes)
        resumed = replace(resumed, spec=replace(resumed.spec, min_train_nodes=needed))
    return resumed


def run_plan(config: Mapping[str, Any], spec: FederationSpec | None = None) -> list[Settings]:
    """The runs a run config asks for, each validated before any round starts.

    Called before a simulation engine starts (``flonnx simulate`` and ``resume``) and again by the
    ServerApp: the registry can be written, ``min-train-nodes`` fits the federation, and each
    strategy is built with its numbers in range. The federation's size is ``min-available-nodes``
    when given (a simulation gives its number of clients), else the spec's ``clients``, else (a
    deployment spec without ``clients``) not known until nodes connect.
    """
    if config.get("resume"):
        requested = Settings.from_run_config({k: v for k, v in config.items() if k in (
            "registry", "blobs", "resume", "num-server-rounds", "signing-key")})
        plans = [resumed_settings(replace(requested, resume=run_id), config)
                 for run_id in requested.resume.replace(",", " ").split()]
        sizes: list[int | None] = [p.min_available_nodes for p in plans]
    else:
        plans = plan_runs(config, spec)
        sizes = [p.min_available_nodes if "min-available-nodes" in config or p.spec.clients is not None
                 else None for p in plans]
    for registry, blobs in {(p.registry, p.blobs) for p in plans}:
        check_registry_writable(registry, blobs or None)
    from flonnx.server.strategies import build_strategy, check_parameters

    for settings, size in zip(plans, sizes, strict=True):
        if settings.signing_key:  # an unreadable key fails here, not after the engine started
            load_signer(settings.signing_key)
        check_min_train_nodes(settings.min_train_nodes, size)
        check_parameters(settings.strategy, settings.strategy_config,
                         None if size is None else settings.sampled_clients)
        build_strategy(settings.strategy, settings.strategy_config, settings.strategy_defaults())
    return plans


def make_server_app(
    overrides: Mapping[str, Any] | None = None,
    reporter: Reporter | None = None,
    result: dict[str, Any] | None = None,
    spec: FederationSpec | None = None,
    stop: StopRequest | None = None,
) -> ServerApp:
    """A ServerApp whose run config is Flower's merged with ``overrides``.

    ``spec`` (in-process callers) replaces the spec that run config names. ``stop`` (set by a signal
    handler, :func:`flonnx.server.stopping.stop_on_signals`) ends the run in progress uncommitted and
    runs no further strategy: the ServerApp raises :class:`~flonnx.server.stopping.Interrupted`.

    ``result`` (if given) receives ``run_ids`` (in plan order, as soon as each run is registered) and
    ``errors`` (run id or strategy -> exception) for in-process callers such as ``flonnx simulate``,
    and ``thread``, the thread the ServerApp runs in.
    A failing run does not stop the next strategy's run; the ServerApp raises the first error at the
    end.
    """
    server_app = ServerApp()
    out: dict[str, Any] = result if result is not None else {}

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        out.setdefault("run_ids", [])
        out.setdefault("errors", {})
        out["thread"] = threading.current_thread()
        try:
            given = {k: v for k, v in dict(context.run_config).items() if v != ""}
            plans = run_plan({**given, **dict(overrides or {})}, spec)
        except BaseException as exc:
            out["errors"]["config"] = exc
            raise
        first: BaseException | None = None
        for settings in plans:
            before = len(out["run_ids"])
            try:
                federation = Federation(grid, settings, reporter, stop)
                federation.run_notes = {"simulation": out["simulation"]} if "simulation" in out else {}
                federation.on_run_created = out["run_ids"].append
                federation.run()
            except Interrupted as exc:  # asked to stop: no further strategy runs
                out["errors"][exc.run_id or settings.strategy] = exc
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, the next strategy still runs
                key = out["run_ids"][-1] if len(out["run_ids"]) > before else settings.strategy
                out["errors"][key] = exc
                _log.error("run with strategy %s failed: %s", settings.strategy, exc)
                first = first or exc
        if first is not None:
            raise first

    return server_app


app = make_server_app()
