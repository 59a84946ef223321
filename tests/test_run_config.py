"""flwr run accepts only run-config keys pyproject.toml declares: every documented key is declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

from flonnx.exchange.spec import RUN_CONFIG_KEYS, load_spec, spec_from_run_config
from flonnx.server.settings import SERVER_KEYS, Settings

ROOT = Path(__file__).resolve().parents[1]
DECLARED = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]


def test_every_run_config_key_flonnx_reads_is_declared_and_nothing_else() -> None:
    assert set(DECLARED) == {*RUN_CONFIG_KEYS, *SERVER_KEYS}


def test_the_declared_defaults_leave_the_spec_as_it_is() -> None:
    assert spec_from_run_config(DECLARED) == load_spec("digits-mixed")
    settings = Settings.from_run_config(DECLARED)
    assert (settings.spec, settings.registry, settings.min_available_nodes, settings.resume) == (
        load_spec("digits-mixed"), "runs", 6, "")


def test_a_declared_key_given_on_the_command_line_overrides_the_spec() -> None:
    config = {**DECLARED, "spec": "hospitals", "seed": 3, "min-train-nodes": 4, "fraction-train": 0.6}

    settings = Settings.from_run_config(config)

    assert (settings.spec.name, settings.seed, settings.min_train_nodes, settings.fraction_train) == (
        "hospitals", 3, 4, 0.6)
