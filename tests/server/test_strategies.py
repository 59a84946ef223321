"""Strategies by name: building, parameter errors, recorded configs, multi-strategy plans."""

from __future__ import annotations

import pytest

from flonnx.exchange.errors import FlonnxError
from flonnx.server.settings import Settings, plan_runs
from flonnx.server.strategies import DP_WRAPPERS, STRATEGIES, build_strategy, strategy_names

#: The configuration each strategy needs in tests (DP wrappers have no default noise or norm).
CONFIGS: dict[str, dict[str, str]] = {
    "fedprox": {"proximal-mu": "0.1"},
    "dp-server-fixed": {"noise-multiplier": "0.01", "clipping-norm": "5.0"},
    "dp-client-fixed": {"noise-multiplier": "0.01", "clipping-norm": "5.0"},
    "dp-server-adaptive": {"noise-multiplier": "0.01", "initial-clipping-norm": "5.0"},
    "dp-client-adaptive": {"noise-multiplier": "0.01", "initial-clipping-norm": "5.0"},
}
DEFAULTS = Settings(min_available_nodes=6).strategy_defaults()


@pytest.mark.parametrize("name", strategy_names())
def test_every_listed_strategy_builds_and_rebuilds_from_its_recorded_config(name: str) -> None:
    built = build_strategy(name, CONFIGS.get(name, {}), DEFAULTS)

    rebuilt = build_strategy(name, built.config, DEFAULTS)

    assert rebuilt.config == built.config
    assert type(rebuilt.strategy) is type(built.strategy)


def test_covers_every_array_strategy_flower_ships() -> None:
    import flwr.serverapp.strategy as flower

    shipped = {n for n in flower.__all__ if n not in ("Strategy", "Result", "FedXgbBagging",
                                                      "FedXgbCyclic", "FedOpt")}
    covered = set(STRATEGIES.values()) | {cls for cls, _ in DP_WRAPPERS.values()}

    assert shipped <= covered, shipped - covered


def test_unknown_strategy_lists_the_choices() -> None:
    with pytest.raises(FlonnxError, match="unknown strategy 'fedavgg'.*fedadam.*dp-client-adaptive"):
        build_strategy("fedavgg", {})


def test_unknown_parameter_lists_the_valid_ones() -> None:
    with pytest.raises(FlonnxError, match=r"no parameter 'etaa'; valid: beta-1, beta-2, eta, eta-l, tau"):
        build_strategy("fedadam", {"etaa": "0.1"})


def test_unparsable_value_says_what_was_expected() -> None:
    with pytest.raises(FlonnxError, match=r"eta='fast': expected float"):
        build_strategy("fedadam", {"eta": "fast"})


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(FlonnxError, match="needs noise-multiplier, clipping-norm"):
        build_strategy("dp-server-fixed", {}, DEFAULTS)


def test_dp_wrapper_passes_unknown_keys_to_its_inner_strategy() -> None:
    built = build_strategy("dp-server-fixed", {**CONFIGS["dp-server-fixed"], "inner": "fedadam",
                                               "eta": "0.05"}, DEFAULTS)

    assert built.config["inner"] == "fedadam"
    assert built.strategy.strategy.eta == 0.05
    assert built.config["num-sampled-clients"] == "6"


def test_client_side_wrappers_ask_clients_to_clip() -> None:
    assert build_strategy("dp-client-adaptive", CONFIGS["dp-client-adaptive"], DEFAULTS).dp_clipping \
        == "adaptive"
    assert build_strategy("dp-server-fixed", CONFIGS["dp-server-fixed"], DEFAULTS).dp_clipping == ""


def test_custom_strategy_by_module_and_class() -> None:
    built = build_strategy("tests.server.custom_strategy:FedAvgEMA", {"decay": "0.9"})

    assert built.strategy.decay == 0.9
    assert built.config == {"decay": "0.9"}


def test_custom_strategy_must_be_a_flower_strategy() -> None:
    with pytest.raises(FlonnxError, match="must be a subclass"):
        build_strategy("flonnx.server.settings:Settings", {})


def test_plan_runs_one_settings_per_strategy_with_scoped_config() -> None:
    plans = plan_runs({"strategy": "fedavg fedadam", "strategy-config": "fedadam.eta=0.05"})

    assert [(p.strategy, dict(p.strategy_config)) for p in plans] == [
        ("fedavg", {}), ("fedadam", {"eta": "0.05"})]


def test_plan_runs_rejects_config_for_a_strategy_not_listed() -> None:
    with pytest.raises(FlonnxError, match="names strategy 'fedyogi'"):
        plan_runs({"strategy": "fedavg", "strategy-config": "fedyogi.eta=1"})
