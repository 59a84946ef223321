"""A run record is checked on every read: its canonical spec against its id, its spec against both.

The record here is built as :class:`~flonnx.exchange.registry.Registry`'s writer builds it (the spec
as run, its canonical form with files replaced by their hashes, and that form's id), from a spec with
a data file and an evaluation file, so that every kind of key is compared.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flonnx.exchange.errors import RegistryError
from flonnx.exchange.hashing import canonical_json, sha256_hex
from flonnx.exchange.registry import Registry, run_record_problems
from flonnx.exchange.spec import parse_spec

Config = dict[str, Any]


@pytest.fixture()
def config(tmp_path: Path) -> Config:
    rows = "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20))
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "held-out.csv").write_text(rows)
    spec = parse_spec({"name": "clinics", "model": "mlp-1-2", "clients": 2, "rounds": 3, "seed": 5,
                       "evaluate": "held-out.csv", "strategy": "fedprox",
                       "strategy-config": {"proximal-mu": "0.1"},
                       "data": {"source": "train.csv", "label": "label"}}, base_dir=tmp_path)
    canonical = spec.canonical()
    # stored as JSON, read back as JSON
    return json.loads(json.dumps({"spec": spec.to_toml_dict(), "spec_canonical": canonical,
                                  "spec_id": sha256_hex(canonical_json(canonical))}))


def _problems(config: Config, change: Callable[[Config], Any] = lambda c: None,
              scenario: str = "clinics", seed: int = 5) -> list[str]:
    changed = copy.deepcopy(config)
    change(changed)
    return run_record_problems("r1", scenario, seed, changed)


def test_a_record_as_written_has_no_problem(config: Config) -> None:
    assert _problems(config) == []
    assert run_record_problems("r1", "anything", 0, {"rounds": 2}) == []  # no canonical spec recorded


def test_what_a_resume_may_change_is_no_problem(config: Config) -> None:
    def resumed(c: Config) -> None:
        c["spec"].update({"rounds": 10, "min-train-nodes": 1, "description": "longer"})

    assert _problems(config, resumed) == []


@pytest.mark.parametrize(("change", "where"), [
    (lambda c: c["spec"]["strategy-config"].update({"proximal-mu": "9"}), "strategy-config"),
    (lambda c: c["spec"].update(seed=6), "seed"),
    (lambda c: c["spec"]["data"].update(label="x"), "data.label"),
    (lambda c: c["spec"]["data"].update(extra=1), "data.extra"),
    (lambda c: c["spec"].update(evaluate={"sha256": "0" * 64, "suffix": ".csv"}), "evaluate"),
    (lambda c: c["spec"].pop("strategy"), "strategy"),
])
def test_a_spec_that_disagrees_with_its_recorded_spec_names_the_key(
    config: Config, change: Callable[[Config], Any], where: str,
) -> None:
    (problem,) = _problems(config, change)

    assert problem.startswith(f"run r1: the spec it runs with differs from its recorded spec (spec id "
                              f"{config['spec_id'][:12]}) at {where}")


def test_a_canonical_spec_that_does_not_re_hash_to_its_id_is_named(config: Config) -> None:
    (problem,) = _problems(config, lambda c: c["spec_canonical"].update(rounds=4))

    assert problem.startswith("run r1: recorded spec re-hashes to ")
    assert problem.endswith(f"not its spec id {config['spec_id'][:12]}")


def test_a_run_name_or_seed_column_that_disagrees_is_named(config: Config) -> None:
    (problem,) = _problems(config, seed=6)

    assert problem == "run r1: its name and seed ('clinics', 6) are not its recorded spec's ('clinics', 5)"


def test_the_registry_refuses_to_read_such_a_run_and_verify_lists_it(config: Config, tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as registry:
        good = registry.create_run("clinics", 5, config)
        bad = registry.create_run("clinics", 6, config)

        assert registry.run(good).config == config
        with pytest.raises(RegistryError, match=f"run {bad}: its name and seed"):
            registry.runs()
        with pytest.raises(RegistryError, match=f"run {bad}: its name and seed"):
            registry.run(bad)
        _, problems = registry.verify(None)
        assert [p.split(":")[0] for p in problems] == [f"run {bad}"]
