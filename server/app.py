"""The flonnx ``ServerApp`` (``[tool.flwr.app.components] serverapp = "flonnx.server.app:app"``).

Run config ``strategy`` may list several strategies (``"fedavg fedadam"``): the ServerApp then runs
one registry run per strategy, one after the other on the same grid, so a comparison pays for the
simulation engine's start-up once. ``resume = "RUN [RUN …]"`` continues recorded runs instead, one
after the other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import FederationSpec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings, plan_runs

__all__ = ["app", "make_server_app", "resumed_settings", "run_plan"]

_log = logging.getLogger(__name__)


def resumed_settings(requested: Settings, config: Mapping[str, Any]) -> Settings:
    """The stored settings of run ``requested.resume``, with a new total of rounds if one was given."""
    with Registry(requested.registry, create=False, migrate=True,
                  blobs=requested.blobs or None) as registry:
        stored = Settings.from_json(registry.run(requested.resume).config)
    rounds = requested.rounds if "num-server-rounds" in config else stored.rounds
    resumed = replace(stored.with_rounds(rounds), registry=requested.registry, blobs=requested.blobs,
                      resume=requested.resume)
    if "min-train-nodes" in config:  # e.g. continue a failed run with fewer required updates
        resumed = replace(resumed, spec=replace(resumed.spec, min_train_nodes=int(config["min-train-nodes"])))
    return resumed


def run_plan(config: Mapping[str, Any], spec: FederationSpec | None = None) -> list[Settings]:
    """The runs a run config asks for, each validated (strategy built) before any round starts."""
    if config.get("resume"):
        requested = Settings.from_run_config({k: v for k, v in config.items() if k in (
            "registry", "blobs", "resume", "num-server-rounds", "min-train-nodes")})
        plans = [resumed_settings(replace(requested, resume=run_id), config)
                 for run_id in requested.resume.replace(",", " ").split()]
    else:
        plans = plan_runs(config, spec)
    from flonnx.server.strategies import build_strategy

    for settings in plans:
        build_strategy(settings.strategy, settings.strategy_config, settings.strategy_defaults())
    return plans


def make_server_app(
    overrides: Mapping[str, Any] | None = None,
    reporter: Reporter | None = None,
    result: dict[str, Any] | None = None,
    spec: FederationSpec | None = None,
) -> ServerApp:
    """A ServerApp whose run config is Flower's merged with ``overrides``.

    ``spec`` (in-process callers) replaces the spec that run config names.

    ``result`` (if given) receives ``run_ids`` (in plan order, as soon as each run is registered) and
    ``errors`` (run id or strategy -> exception) for in-process callers such as ``flonnx simulate``.
    A failing run does not stop the next strategy's run; the ServerApp raises the first error at the
    end.
    """
    server_app = ServerApp()
    out: dict[str, Any] = result if result is not None else {}

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        out.setdefault("run_ids", [])
        out.setdefault("errors", {})
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
                federation = Federation(grid, settings, reporter)
                federation.run_notes = {"simulation": out["simulation"]} if "simulation" in out else {}
                federation.on_run_created = out["run_ids"].append
                federation.run()
            except Exception as exc:  # noqa: BLE001 - recorded, the next strategy still runs
                key = out["run_ids"][-1] if len(out["run_ids"]) > before else settings.strategy
                out["errors"][key] = exc
                _log.error("run with strategy %s failed: %s", settings.strategy, exc)
                first = first or exc
        if first is not None:
            raise first

    return server_app


app = make_server_app()
