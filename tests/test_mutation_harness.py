"""``make mutation`` discounts only mutants that provably cannot change behaviour."""

from __future__ import annotations

from mutation.run import MODULES, equivalent

ANNOTATION = "annotation (never evaluated)"
MUL = "core/ReplaceBinaryOperator_Mul_Div"
SOURCE = '''from __future__ import annotations


def put(data: bytes, blob_id: str | None = None, *, create: bool = True) -> str | None:
    size = len(data) * 2
    return blob_id or str(size | 1)
'''


def test_mutants_in_annotations_and_the_keyword_only_star_are_equivalent() -> None:
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Add", (4, 34)) == ANNOTATION
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Sub", (4, 80)) == ANNOTATION
    assert (equivalent(SOURCE, MUL, (4, 49)) or "").startswith("keyword-only")


def test_mutants_in_code_are_never_discounted() -> None:
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_Mul_Div", (5, 21)) is None  # len(data) * 2
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Add", (6, 31)) is None  # size | 1
    assert equivalent(SOURCE, "core/ReplaceTrueWithFalse", (4, 67)) is None  # a default value
    assert equivalent(SOURCE, "core/ReplaceOrWithAnd", (6, 18)) is None


def test_a_product_in_a_default_value_is_code_even_inside_the_parameter_list() -> None:
    source = ("from __future__ import annotations\n\n\n"
              "def wait(x: int, *, timeout: float = 2 * 60) -> None:\n    pass\n")
    assert (equivalent(source, MUL, (4, 17)) or "").startswith("keyword-only")
    assert equivalent(source, MUL, (4, 39)) is None  # the operator of 2 * 60
    assert equivalent(source, MUL, (4, 37)) is None


def test_every_guarded_module_and_test_file_exists() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for module, tests in MODULES.items():
        assert (root / module).is_file(), module
        for test in tests:
            assert (root / test).is_file(), test


def _session(tmp_path, source: str):  # type: ignore[no-untyped-def]
    """A real cosmic-ray session over a one-function module (``init`` only: nothing runs)."""
    import subprocess
    import sys
    from pathlib import Path

    from mutation.run import _config

    (tmp_path / "mod.py").write_text(source, encoding="utf-8")
    config, session = tmp_path / "c.toml", tmp_path / "s.sqlite"
    config.write_text(_config("mod.py", ["nothing.py"], 5.0), encoding="utf-8")
    cosmic = str(Path(sys.executable).parent / "cosmic-ray")
    subprocess.run([cosmic, "init", str(config), str(session)], cwd=tmp_path, check=True)
    return session


def test_equivalent_mutants_are_not_run_and_only_earlier_survivors_run_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cosmic_ray.work_db import WorkDB, use_db

    from mutation.run import _key, _results, _skip_known

    session = _session(tmp_path, SOURCE)
    with use_db(str(session), WorkDB.Mode.open) as db:
        total = db.num_work_items
        items = list(db.pending_work_items)
    first = _skip_known(session, SOURCE, None)
    in_annotations = sum(equivalent(SOURCE, i.mutations[0].operator_name, tuple(i.mutations[0].start_pos))
                         is not None for i in items)
    assert first == (in_annotations, 0) and 0 < in_annotations < total
    result = _results(session, SOURCE)
    assert result["equivalent"] == in_annotations and result["mutants"] == 0
    assert result["pending"] == total - in_annotations  # the rest wait for `exec`

    # a second pass over the same source: what the first did not kill runs (one survivor, one
    # mutant it never reached); every other is carried as killed
    (tmp_path / "again").mkdir()
    session = _session(tmp_path / "again", SOURCE)
    code = [i for i in items if equivalent(SOURCE, i.mutations[0].operator_name,
                                           tuple(i.mutations[0].start_pos)) is None]
    assert len(code) >= 3
    survivor, unrun = _key(code[0].mutations[0]), _key(code[1].mutations[0])
    earlier = {"survivors": [{"key": survivor}], "pending_keys": [unrun]}
    assert _skip_known(session, SOURCE, earlier) == (in_annotations, len(code) - 2)
    again = _results(session, SOURCE)
    assert again["killed"] == again["killed_earlier"] == len(code) - 2 and again["pending"] == 2
    assert sorted(again["pending_keys"]) == sorted([survivor, unrun])  # type: ignore[call-overload]
    assert "kill_rate_95" in again  # partial: the rate comes with its interval


def test_an_earlier_pass_must_be_of_the_same_source_and_list_what_it_left_unrun() -> None:
    import pytest

    from mutation.run import _earlier

    done = {"module": "m.py", "source_sha256": "aa", "pending_keys": [], "survivors": []}
    assert _earlier([done], "m.py", "aa") is done
    partial = {**done, "pending_keys": ["op#1@3:4"]}
    assert _earlier([partial], "m.py", "aa") is partial  # --again continues a stopped pass
    assert _earlier(None, "m.py", "aa") is None
    with pytest.raises(SystemExit, match="changed"):
        _earlier([done], "m.py", "bb")
    with pytest.raises(SystemExit, match="do not list the mutants left unrun"):
        _earlier([{"module": "m.py", "source_sha256": "aa", "survivors": []}], "m.py", "aa")
    with pytest.raises(SystemExit, match="no pass"):
        _earlier([done], "other.py", "aa")


def test_the_interval_of_a_sampled_kill_rate_holds_the_rate_and_narrows_with_more_mutants() -> None:
    from mutation.run import wilson

    low, high = wilson(90, 100)
    assert low < 0.9 < high and 0.82 < low < 0.84 and 0.94 < high < 0.95
    wide, narrow = wilson(9, 10), wilson(900, 1000)
    assert wide[1] - wide[0] > 3 * (narrow[1] - narrow[0])
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0


def test_a_pass_past_its_minutes_is_stopped_and_the_mutant_in_place_undone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    from mutation.run import _exec

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "mod.py").write_text("x = 1\n", encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "add", "mod.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "m"], check=True)
    (tmp_path / "mod.py").write_text("x = 2\n", encoding="utf-8")  # a mutant left in place
    assert _exec(["sleep", "60"], tmp_path, dict(os.environ), 0.01, "mod.py") is False
    assert (tmp_path / "mod.py").read_text(encoding="utf-8") == "x = 1\n"
    assert _exec(["true"], tmp_path, dict(os.environ), 1.0, "mod.py") is True
