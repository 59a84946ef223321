"""Evaluation records: a version's evaluations (e.g. each site's metrics of the final version) are
stored beside it, hashed and checked on every read and by ``verify``, without changing its id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from flonnx.exchange import _schema as schema
from flonnx.exchange.errors import LineageError, RegistryError
from flonnx.exchange.registry import Evaluation, Registry
from tests.exchange.registry_worker import write_rounds


@pytest.fixture(params=["directory", pytest.param("postgresql", marks=pytest.mark.deployment)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(registry, blobs): a directory, or a PostgreSQL URL and a blob directory."""
    if request.param == "directory":
        return str(tmp_path / "registry"), None
    return request.getfixturevalue("postgres_db"), str(tmp_path / "blobs")


def _engine_url(registry: str) -> str:
    return registry if "://" in registry else f"sqlite:///{registry}/registry.db"


def _run(registry: Registry, rounds: int = 2) -> tuple[str, str]:
    """(run id, its final version) of a small recorded run."""
    run_id = registry.create_run("evaluated", 1, {})
    write_rounds(registry, run_id, rounds, 2)
    heads = registry.heads(run_id)
    return run_id, heads[max(heads)]


def test_a_site_evaluation_is_read_back_and_leaves_the_version_unchanged(
    database: tuple[str, str | None],
) -> None:
    with Registry(database[0], blobs=database[1]) as registry:
        run_id, final = _run(registry)
        record_before = registry.record(final)
        ids = registry.add_evaluations([
            Evaluation(run_id, final, "site:b", {"accuracy": 0.5, "num-examples": 12}),
            Evaluation(run_id, final, "site:a", {}, "refused: policy min-rows 50"),
        ])
        evaluations = registry.evaluations(final)
        record_after = registry.record(final)
        checked, problems = registry.verify(run_id)

    assert [e.source for e in evaluations] == ["site:a", "site:b"]
    assert evaluations[1].metrics == {"accuracy": 0.5, "num-examples": 12.0}
    assert evaluations[0].failed_reason == "refused: policy min-rows 50" and evaluations[0].metrics == {}
    assert ids == [e.evaluation_id for e in reversed(evaluations)]
    assert record_after == record_before and record_after.version_id == final
    assert problems == [] and checked > 0


def test_a_source_evaluating_the_same_version_again_replaces_its_record(tmp_path: Path) -> None:
    with Registry(tmp_path / "r") as registry:
        run_id, final = _run(registry)
        registry.add_evaluation(run_id, final, "site:a", {"accuracy": 0.5})
        registry.add_evaluation(run_id, final, "site:a", {"accuracy": 0.75})

        assert [e.metrics for e in registry.evaluations(final, run_id)] == [{"accuracy": 0.75}]


def test_an_evaluation_of_a_version_the_run_did_not_record_is_refused(tmp_path: Path) -> None:
    with Registry(tmp_path / "r") as registry:
        run_id, final = _run(registry)
        other = registry.create_run("other", 2, {})

        with pytest.raises(LineageError, match=f"run {other} did not record it"):
            registry.add_evaluation(other, final, "site:a", {"accuracy": 0.5})
        assert registry.evaluations(final) == []


def test_a_changed_evaluation_is_refused_on_read_and_named_by_verify(
    database: tuple[str, str | None],
) -> None:
    with Registry(database[0], blobs=database[1]) as registry:
        run_id, final = _run(registry)
        registry.add_evaluation(run_id, final, "site:a", {"accuracy": 0.5})
    engine = create_engine(_engine_url(database[0]))
    with engine.begin() as connection:
        e = schema.evaluations
        stored = connection.execute(e.select()).one()
        connection.execute(update(e).values(record_json=stored.record_json.replace("0.5", "0.99")))
    engine.dispose()

    with Registry(database[0], blobs=database[1], create=False) as registry:
        with pytest.raises(RegistryError, match=r"evaluation of version .* by 'site:a': its record "
                                                r"re-hashes to .*changed after it was written"):
            registry.evaluations(final)
        _, problems = registry.verify(run_id)

    assert len(problems) == 1 and "by 'site:a': its record re-hashes to" in problems[0]


def test_verify_names_an_evaluation_of_a_version_outside_its_run(tmp_path: Path) -> None:
    with Registry(tmp_path / "r") as registry:
        run_id, final = _run(registry)
        other = registry.create_run("other", 2, {})
        moved = Evaluation(other, final, "site:a", {"accuracy": 0.5})
    engine = create_engine(_engine_url(str(tmp_path / "r")))
    with engine.begin() as connection:  # written behind the registry's back, consistently hashed
        connection.execute(schema.evaluations.insert().values(
            run_id=other, version_id=final, source="site:a", evaluation_id=moved.evaluation_id,
            record_json=moved.canonical_bytes().decode()))
    engine.dispose()

    with Registry(tmp_path / "r", create=False) as registry:
        _, problems = registry.verify()
        _, own = registry.verify(run_id)

    assert problems == [f"run {other} evaluation by 'site:a': version {final[:12]} is not a version "
                        "of the run"]
    assert own == []


def test_a_registry_of_schema_3_is_migrated_and_keeps_its_annotated_site_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as older:  # the code of a flonnx before evaluation records
        older.setattr(schema, "LATEST", 3)
        with Registry(tmp_path / "r") as old:
            run_id, final = _run(old)
            old.annotate_run(run_id, "site_evaluation", {"version_id": final, "sites": {"a": {}}})
            assert old.schema_version == 3

    with Registry(tmp_path / "r", create=False, migrate=True) as registry:
        migrated = registry.migrated
        before = registry.evaluations(final)
        registry.add_evaluation(run_id, final, "site:a", {"accuracy": 1.0})
        annotation = registry.run(run_id).config["site_evaluation"]
        _, problems = registry.verify()

    assert migrated == [4] and before == []
    assert annotation["version_id"] == final
    assert problems == []
