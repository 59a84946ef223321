"""The flonnx ``ServerApp`` (``[tool.flwr.app.components] serverapp = "server.app:app"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.federation import Federation
from server.progress import Reporter
from server.settings import Settings

__all__ = ["app", "make_server_app"]


def make_server_app(
    overrides: Mapping[str, Any] | None = None,
    reporter: Reporter | None = None,
    result: dict[str, Any] | None = None,
) -> ServerApp:
    """A ServerApp whose run config is Flower's merged with ``overrides``.

    ``result`` (if given) receives ``run_id`` as soon as the run is registered and ``error`` if the
    run fails, for in-process callers such as ``flonnx simulate``.
    """
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            settings = Settings.from_run_config({**dict(context.run_config), **dict(overrides or {})})
            federation = Federation(grid, settings, reporter)
            if result is not None:
                federation.on_run_created = lambda run_id: result.__setitem__("run_id", run_id)
            federation.run()
        except BaseException as exc:
            if result is not None:
                result["error"] = exc  # type: ignore[assignment]
            raise

    return server_app


app = make_server_app()
