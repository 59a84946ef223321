"""``make mutation`` discounts only mutants that provably cannot change behaviour."""

from __future__ import annotations

from mutation.run import MODULES, equivalent

ANNOTATION = "annotation (never evaluated)"
SOURCE = '''from __future__ import annotations


def put(data: bytes, blob_id: str | None = None, *, create: bool = True) -> str | None:
    size = len(data) * 2
    return blob_id or str(size | 1)
'''


def test_mutants_in_annotations_and_the_keyword_only_star_are_equivalent() -> None:
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Add", (4, 34)) == ANNOTATION
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Sub", (4, 80)) == ANNOTATION
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_Mul_Div", (4, 49)).startswith("keyword-only")


def test_mutants_in_code_are_never_discounted() -> None:
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_Mul_Div", (5, 21)) is None  # len(data) * 2
    assert equivalent(SOURCE, "core/ReplaceBinaryOperator_BitOr_Add", (6, 31)) is None  # size | 1
    assert equivalent(SOURCE, "core/ReplaceTrueWithFalse", (4, 67)) is None  # a default value
    assert equivalent(SOURCE, "core/ReplaceOrWithAnd", (6, 18)) is None


def test_every_guarded_module_and_test_file_exists() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for module, tests in MODULES.items():
        assert (root / module).is_file(), module
        for test in tests:
            assert (root / test).is_file(), test
