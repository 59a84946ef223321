"""Byzantine clients (spec ``[byzantine]``): attacks pass the reply checks and change the aggregate.

The figures per robust strategy come from ``python -m benchmarks.byzantine`` (docs/reliability.md);
this runs its smallest case: 5 clients, one of them malicious, one round.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.byzantine import plan, run_one, strategy_config, table

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_one("breast-cancer", "fedavg", None, clients=5, rounds=1, share=0.2,
                   registry=tmp_path_factory.mktemp("clean"))


@pytest.mark.parametrize("attack", ["sign-flip", "scaled", "noise", "label-flip", "copy"])
def test_an_attack_is_accepted_and_changes_the_aggregate(clean: dict, attack: str, tmp_path: Path) -> None:
    attacked = run_one("breast-cancer", "fedavg", attack, clients=5, rounds=1, share=0.2,
                       registry=tmp_path)

    assert attacked["rejected"] == 0 and clean["rejected"] == 0
    assert attacked["version"] != clean["version"]
    assert 0.0 <= attacked["accuracy"] <= 1.0


def test_the_plan_covers_two_attacks_everywhere_and_the_rest_on_fedavg_and_fedmedian() -> None:
    runs = plan(["digits"], run_all=False)

    assert len(runs) == 6 * 3 + 2 * 3
    assert {s for _, s, a in runs if a == "copy"} == {"fedavg", "fedmedian"}
    assert strategy_config("bulyan", 20, 4, 0.2) == {"num-malicious-nodes": "4"}
    assert strategy_config("multikrum", 20, 4, 0.2)["num-nodes-to-select"] == "12"


def test_the_table_marks_runs_not_made() -> None:
    rows = [{"dataset": "digits", "strategy": "krum", "attack": a, "accuracy": 0.5}
            for a in ("none", "sign-flip")]

    assert table(rows).splitlines()[2] == "| digits | krum | 0.5000 | 0.5000 | – | – | – | – |"
