"""Strategies by name: building, parameter errors, recorded configs, multi-strategy plans."""

from __future__ import annotations

import pytest

from flonnx.exchange.errors import FlonnxError
from flonnx.server.settings import Settings, plan_runs
from flonnx.server.strategies import (
    DP_WRAPPERS,
    STRATEGIES,
    build_strategy,
    check_parameters,
    strategy_names,
)

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


@pytest.mark.parametrize(("name", "config", "message"), [
    ("fedadam", {"beta-1": "1.0"}, "strategy fedadam: beta-1=1.0 is out of range; allowed: [0, 1)"),
    ("fedyogi", {"beta_2": "-0.1"}, "strategy fedyogi: beta-2=-0.1 is out of range; allowed: [0, 1)"),
    ("fedadagrad", {"eta": "-1"}, "strategy fedadagrad: eta=-1 is out of range; allowed: [0, inf)"),
    ("fedadam", {"eta": "nan"}, "strategy fedadam: eta=nan is out of range; allowed: [0, inf)"),
    ("fedadam", {"eta-l": "inf"}, "strategy fedadam: eta-l=inf is out of range; allowed: [0, inf)"),
    ("fedadam", {"tau": "0"}, "strategy fedadam: tau=0 is out of range; allowed: (0, inf)"),
    ("fedprox", {"proximal-mu": "-0.5"}, "strategy fedprox: proximal-mu=-0.5 is out of range"),
    ("fedavgm", {"server-momentum": "1"}, "strategy fedavgm: server-momentum=1 is out of range; "
                                          "allowed: [0, 1)"),
    ("qfedavg", {"q": "-1"}, "strategy qfedavg: q=-1 is out of range; allowed: [0, inf)"),
    ("dp-server-fixed", {**CONFIGS["dp-server-fixed"], "noise-multiplier": "-1"},
     "strategy dp-server-fixed: noise-multiplier=-1 is out of range"),
    ("dp-server-fixed", {**CONFIGS["dp-server-fixed"], "inner": "fedadam", "beta-1": "1.5"},
     "strategy fedadam: beta-1=1.5 is out of range; allowed: [0, 1)"),
])
def test_rejects_a_number_out_of_its_range_naming_parameter_value_and_range(
    name: str, config: dict[str, str], message: str,
) -> None:
    with pytest.raises(FlonnxError) as caught:
        check_parameters(name, config, 6)

    assert message in str(caught.value)


@pytest.mark.parametrize("name", strategy_names())
def test_accepts_every_strategy_at_the_edges_of_its_ranges(name: str) -> None:
    edges = {"beta-1": "0", "beta-2": "0.999", "proximal-mu": "0", "server-momentum": "0.99",
             "eta": "0", "q": "0", "num-malicious-nodes": "1", "target-clipped-quantile": "1"}
    params = build_strategy(name, CONFIGS.get(name, {}), DEFAULTS).config

    check_parameters(name, {**CONFIGS.get(name, {}), **{k: v for k, v in edges.items() if k in params}},
                     7)


@pytest.mark.parametrize(("name", "malicious", "sampled", "allowed"), [
    ("krum", 1, 4, "allowed: 0 to 0"),  # 2f + 3 = 5 updates
    ("multikrum", 2, 6, "allowed: 0 to 1"),
    ("bulyan", 1, 6, "allowed: 0 to 0"),  # 4f + 3 = 7 updates
    ("bulyan", 0, 2, "allowed: none: bulyan needs at least 3 clients a round"),
])
def test_robust_strategies_bound_the_malicious_nodes_by_the_clients_sampled_a_round(
    name: str, malicious: int, sampled: int, allowed: str,
) -> None:
    config = {"num-malicious-nodes": str(malicious)}

    with pytest.raises(FlonnxError) as caught:
        check_parameters(name, config, sampled)
    check_parameters(name, config, sampled + 1)  # each case is one client short of its bound
    check_parameters(name, config, None)  # federation size not known before nodes connect

    assert f"num-malicious-nodes={malicious} needs at least" in str(caught.value)
    assert f"{sampled} clients are sampled a round; {allowed}" in str(caught.value)


def test_a_custom_strategy_checks_its_own_parameters() -> None:
    check_parameters("tests.server.custom_strategy:FedAvgEMA", {"decay": "-1"}, 6)
