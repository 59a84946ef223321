"""The federation spec: validation names the key and the allowed values; ids ignore where files live."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from flonnx.exchange.spec import (
    SpecError,
    assign_frameworks,
    builtin_specs,
    load_spec,
    parse_spec,
    spec_from_run_config,
)

BASE = {"model": "digits-mlp", "clients": 6, "data": {"source": "digits"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "clasification"},
     "key 'task': 'clasification' is not one of classification, binary, regression"),
    ({"data": {"source": "digits", "partition": "dirichlet"}},
     "key 'data.partition': 'dirichlet' is not one of iid, dirichlet:ALPHA, shards:K or column:NAME"),
    ({"data": {"source": "digits", "partition": "dirichlet:-1"}}, "key 'data.partition'"),
    ({"data": {"source": "table.xlsx"}}, "key 'data.source': 'table.xlsx' is neither a built-in"),
    ({"data": {"source": "missing.csv"}}, "key 'data.source': data file "),
    ({"frameworks": "torch:2,tensorflow:4"}, "'tensorflow' is not a framework flonnx trains with"),
    ({"frameworks": "torch:2,jax:2"}, "key 'frameworks': counts sum to 4 but clients is 6"),
    ({"fraction-train": 0}, "key 'fraction-train': expected a number in (0.0, 1.0], got 0"),
    ({"rounds": 0}, "key 'rounds': must be at least 1, got 0"),
    ({"rounds": "many"}, "key 'rounds': expected an integer, got 'many'"),
    ({"min-train-nodes": 7}, "key 'min-train-nodes': 7 is more than the 6 clients"),
    ({"evaluate": 1.5}, "key 'evaluate': a held-out fraction must be in (0, 1), got 1.5"),
    ({"model": "resnet"}, "key 'model': 'resnet' is not a zoo model"),
    ({"train": {"epochs": 3}}, "key 'train.epochs': unknown; known: local-epochs"),
    ({"colour": "blue"}, "unknown key(s) colour; known:"),
    ({"faults": {"x": "raise"}}, "key 'faults': expected a table of partition id = one of raise, nan"),
    ({"input-shape": [0, 3]}, "key 'input-shape': expected a list of positive integers"),
])
def test_invalid_spec_names_the_key_and_the_allowed_values(change: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **change}, source="fed.toml")

    assert str(caught.value).startswith("fed.toml: ") and message in str(caught.value)


def test_column_partitioning_conflicts_with_an_explicit_client_count(tmp_path: Path) -> None:
    data = tmp_path / "sites.csv"
    data.write_text("site,x,label\na,1,0\nb,2,1\n")

    with pytest.raises(SpecError, match="key 'clients': 3 conflicts with partition 'column:site'"):
        parse_spec({"model": "mlp-1-2", "clients": 3,
                    "data": {"source": str(data), "partition": "column:site"}})
    spec = parse_spec({"model": "mlp-1-2", "data": {"source": str(data), "partition": "column:site"}})
    assert spec.clients is None and spec.data is not None and spec.data.partition_column == "site"


def test_overrides_go_through_the_same_validation() -> None:
    spec = load_spec("digits-mixed", {"clients": 4, "frameworks": "torch:2,jax:2", "rounds": 2})

    assert (spec.clients, spec.framework_mix, spec.rounds) == (4, "torch:2,jax:2", 2)
    with pytest.raises(SpecError, match="counts sum to 6 but clients is 4"):
        load_spec("digits-mixed", {"clients": 4})


def test_run_config_keys_override_the_named_spec() -> None:
    spec = spec_from_run_config({"spec": "hospitals", "num-server-rounds": 3, "seed": 7,
                                 "local-epochs": 1, "partition": "iid"})

    assert (spec.name, spec.rounds, spec.seed, spec.train_settings["local-epochs"]) == (
        "hospitals", 3, 7, 1)
    assert spec.data is not None and spec.data.partition == "iid"


def test_spec_id_depends_on_data_content_not_on_where_the_file_lives(tmp_path: Path) -> None:
    for name in ("clone-a", "clone-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "d.csv").write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    a = parse_spec({"model": "mlp-1-2", "clients": 2, "data": {"source": "d.csv"}},
                   base_dir=tmp_path / "clone-a")
    b = parse_spec({"model": "mlp-1-2", "clients": 2, "data": {"source": "d.csv"}},
                   base_dir=tmp_path / "clone-b")

    assert a.data is not None and b.data is not None and a.data.source != b.data.source
    assert a.id == b.id
    (tmp_path / "clone-b" / "d.csv").write_text("x,label\n" + "".join(f"{i},1\n" for i in range(20)))
    assert a.id != b.id


def test_spec_survives_its_stored_form_with_the_same_id() -> None:
    spec = load_spec("hospitals")

    again = parse_spec(spec.to_toml_dict(), source="stored")

    assert again.id == spec.id and again == spec


def test_frameworks_are_assigned_by_a_seeded_shuffle_that_keeps_the_counts() -> None:
    spec = load_spec("digits-mixed")

    first, again = assign_frameworks(spec, 6), assign_frameworks(spec, 6)
    by_seed = {tuple(assign_frameworks(load_spec("digits-mixed", {"seed": s}), 6)) for s in range(6)}

    assert first == again
    assert Counter(first) == Counter({"torch": 2, "jax": 2, "sklearn": 2})
    assert len(by_seed) > 1  # the shuffle depends on the run seed


def test_every_builtin_preset_loads_and_is_listed() -> None:
    names = builtin_specs()

    assert {"digits-mixed", "digits-cnn", "digits-faulty", "hospitals", "fleet", "diabetes"} <= set(names)
    for name in names:
        assert load_spec(name).name == name


def test_a_spec_file_resolves_relative_paths_against_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    shutil.copy(Path(__file__), tmp_path / "data" / "rows.csv")  # content does not matter here
    (tmp_path / "fed.toml").write_text('model = "mlp-1-2"\nclients = 2\n[data]\nsource = "data/rows.csv"\n')

    spec = load_spec(tmp_path / "fed.toml")

    assert spec.data is not None and spec.data.source == str(tmp_path / "data" / "rows.csv")


def test_unknown_preset_lists_the_builtin_ones() -> None:
    with pytest.raises(SpecError, match="no built-in scenario of that name .built-in: diabetes, "):
        load_spec("hospital")


def test_the_split_and_partitions_are_pinned_by_the_data_seed_not_the_run_seed() -> None:
    from flonnx.exchange.sources import evaluation_source, node_source

    def rows(overrides: dict) -> tuple[list[float], list[float]]:
        spec = load_spec("diabetes", overrides)
        held = evaluation_source(spec)
        assert held is not None
        part = node_source({"partition-id": 0, "num-partitions": 4}, spec, spec.task)
        return held.load()[1].tolist(), part.load()[1].tolist()

    base = rows({})

    assert rows({"seed": 5}) == base
    other_test, other_part = rows({"data.seed": 1})
    assert other_test != base[0] and other_part != base[1]
