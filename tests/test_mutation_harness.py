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

    # a second pass over the same source: one earlier survivor runs again, every other is carried
    (tmp_path / "again").mkdir()
    session = _session(tmp_path / "again", SOURCE)
    code = [i for i in items if equivalent(SOURCE, i.mutations[0].operator_name,
                                           tuple(i.mutations[0].start_pos)) is None]
    survivor = {"key": _key(code[0].mutations[0])}
    assert _skip_known(session, SOURCE, {"survivors": [survivor]}) == (in_annotations, len(code) - 1)
    again = _results(session, SOURCE)
    assert again["killed"] == again["killed_earlier"] == len(code) - 1 and again["pending"] == 1


def test_a_partial_or_changed_earlier_pass_is_refused() -> None:
    import pytest

    from mutation.run import _earlier

    done = {"module": "m.py", "source_sha256": "aa", "pending": 0, "survivors": []}
    assert _earlier([done], "m.py", "aa") is done
    assert _earlier(None, "m.py", "aa") is None
    with pytest.raises(SystemExit, match="changed"):
        _earlier([done], "m.py", "bb")
    with pytest.raises(SystemExit, match="did not run every mutant"):
        _earlier([{**done, "pending": 3}], "m.py", "aa")
    with pytest.raises(SystemExit, match="no pass"):
        _earlier([done], "other.py", "aa")
