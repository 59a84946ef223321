"""A site's policy file: every key, every malformed line, and every rule's one-line reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, PolicyError
from flonnx.exchange.models import with_metadata
from flonnx.exchange.policy import SitePolicy, approval_id, graph_operators, parameter_count
from flonnx.exchange.preprocess import METADATA_KEY
from tests.tiny_models import function_mlp, gemm_mlp


def _policy(tmp_path: Path, text: str) -> SitePolicy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return SitePolicy.load(path)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        SitePolicy.load(path)
    return str(caught.value).replace(str(path), "P")


# -- reading the file --------------------------------------------------------------------------------

def test_an_empty_policy_allows_everything_and_shares_nothing(tmp_path: Path) -> None:
    definition, _ = gemm_mlp(4, 8, 2)

    policy = _policy(tmp_path, "")

    assert policy.check(definition, 1) is None
    assert (policy.definitions, policy.max_parameters, policy.operators, policy.min_rows) == (None,) * 4
    assert not policy.allows("label-histogram")


def test_every_key_is_read(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """
definitions = ["ABCDEF0123456789", "%s"]
max-parameters = 1_000
operators = ["Gemm", "Relu"]
min-rows = 20
share = ["label-histogram"]
""" % ("0" * 64))

    assert policy.definitions == ("abcdef0123456789", "0" * 64)
    assert policy.max_parameters == 1000
    assert policy.operators == frozenset({"Gemm", "Relu"})
    assert policy.min_rows == 20
    assert policy.allows("label-histogram") and not policy.allows("group-metrics")


def test_any_is_the_same_as_leaving_a_rule_out(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 'definitions = "any"\noperators = "any"\n')

    assert policy.definitions is None and policy.operators is None


def test_policy_error_is_a_flonnx_error() -> None:
    assert issubclass(PolicyError, FlonnxError)


@pytest.mark.parametrize(("text", "message"), [
    ("max-params = 5\n",
     "policy P: unknown key 'max-params'; the keys are definitions, max-parameters, operators, "
     "min-rows, share"),
    ('max-parameters = "lots"\n',
     "policy P: key 'max-parameters': expected a positive integer, got 'lots'"),
    ("max-parameters = 0\n", "policy P: key 'max-parameters': expected a positive integer, got 0"),
    ("max-parameters = true\n",
     "policy P: key 'max-parameters': expected a positive integer, got True"),
    ("min-rows = 2.5\n", "policy P: key 'min-rows': expected a positive integer, got 2.5"),
    ('operators = "Gemm"\n',
     "policy P: key 'operators': expected \"any\" or a list of ONNX operator types "
     "(e.g. [\"Gemm\", \"Relu\"]), got 'Gemm'"),
    ('operators = ["Gemm", 3]\n',
     "policy P: key 'operators': expected \"any\" or a list of ONNX operator types "
     "(e.g. [\"Gemm\", \"Relu\"]), got ['Gemm', 3]"),
    ('definitions = ["3fa1c2"]\n',
     "policy P: key 'definitions': expected \"any\" or a list of definition ids (hexadecimal, 12 "
     "to 64 characters: a full id or a prefix), got ['3fa1c2']"),
    ('definitions = ["not-hex-but-long-enough"]\n',
     "policy P: key 'definitions': expected \"any\" or a list of definition ids (hexadecimal, 12 "
     "to 64 characters: a full id or a prefix), got ['not-hex-but-long-enough']"),
    ('definitions = "all"\n',
     "policy P: key 'definitions': expected \"any\" or a list of definition ids (hexadecimal, 12 "
     "to 64 characters: a full id or a prefix), got 'all'"),
    ('share = ["rows"]\n',
     "policy P: key 'share': expected a list of facts that may leave the site, each one of "
     "label-histogram, group-metrics, got ['rows']"),
    ('share = "label-histogram"\n',
     "policy P: key 'share': expected a list of facts that may leave the site, each one of "
     "label-histogram, group-metrics, got 'label-histogram'"),
    ("min-rows = \n", "policy P is not valid TOML: Invalid value (at line 1, column 12)"),
])
def test_a_bad_line_is_one_error_naming_the_file_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, message: str,
) -> None:
    assert _error(tmp_path, text) == message


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^policy .*absent\.toml does not exist$"):
        SitePolicy.load(tmp_path / "absent.toml")


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^policy .* is a directory, not a file$"):
        SitePolicy.load(tmp_path)


def test_a_policy_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"min-rows = 1 # \xe9\n")

    with pytest.raises(PolicyError, match=r"^policy .* is not UTF-8 text$"):
        SitePolicy.load(path)


# -- the rules ---------------------------------------------------------------------------------------

def test_a_definition_is_approved_by_its_full_id_or_a_prefix(tmp_path: Path) -> None:
    definition, _ = gemm_mlp(4, 8, 2)

    full = _policy(tmp_path, f'definitions = ["{definition.id}"]')
    prefix = _policy(tmp_path, f'definitions = ["{definition.id[:12].upper()}"]')

    assert full.check(definition) is None
    assert prefix.check(definition) is None


def test_an_unapproved_definition_is_refused_naming_its_id_and_the_policy(tmp_path: Path) -> None:
    definition, _ = gemm_mlp(4, 8, 2)
    other, _ = gemm_mlp(4, 9, 2)
    policy = _policy(tmp_path, f'definitions = ["{other.id}", "{"a" * 12}"]')

    reason = policy.check(definition)

    assert reason == (f"site policy: definition {definition.id[:12]} is not approved (policy "
                      f"{tmp_path / 'policy.toml'} approves 2 definitions)")


def test_the_federation_s_preprocessing_constants_keep_a_definition_approved(tmp_path: Path) -> None:
    definition, weights = gemm_mlp(4, 8, 2)
    model = definition.materialize(weights)
    announced, _ = with_metadata(model, {"flonnx.task": "binary"})
    trained, _ = with_metadata(model, {"flonnx.task": "binary", METADATA_KEY: '{"mean": [0.5]}'})
    policy = _policy(tmp_path, f'definitions = ["{announced.id[:16]}"]')

    assert trained.id != announced.id
    assert approval_id(trained) == announced.id == approval_id(announced)
    assert policy.check(trained) is None
    # the trained id itself is not what a site lists: it exists only once the statistics are in
    listing_trained = _policy(tmp_path, f'definitions = ["{trained.id}"]')
    assert listing_trained.check(trained) == listing_trained.check(announced) == (
        f"site policy: definition {announced.id[:12]} is not approved (policy "
        f"{tmp_path / 'policy.toml'} approves 1 definition)")
    # but not other metadata: the task is part of what a site approves
    other, _ = with_metadata(model, {"flonnx.task": "classification"})
    assert policy.check(other) is not None


def test_too_many_parameters_are_refused_with_the_count_and_the_limit(tmp_path: Path) -> None:
    definition, _ = gemm_mlp(40, 300, 100)  # 40*300 + 300 + 300*100 + 100 parameters

    assert parameter_count(definition) == 42_400
    assert _policy(tmp_path, "max-parameters = 42_400").check(definition) is None
    assert _policy(tmp_path, "max-parameters = 42_399").check(definition) == (
        "site policy: 42,400 parameters exceed max-parameters 42,399")


def test_operators_outside_the_list_are_refused_in_sorted_order(tmp_path: Path) -> None:
    definition, _ = gemm_mlp(4, 8, 1, head="Sigmoid")

    assert _policy(tmp_path, 'operators = ["Gemm", "Relu", "Sigmoid"]').check(definition) is None
    assert _policy(tmp_path, 'operators = ["Gemm", "Relu"]').check(definition) == (
        "site policy: operator Sigmoid is not allowed")
    assert _policy(tmp_path, 'operators = ["Gemm"]').check(definition) == (
        "site policy: operators Relu, Sigmoid are not allowed")


def _model_with_subgraphs() -> onnx.ModelProto:
    """``If`` whose else branch holds a ``Loop`` whose body holds a ``Scan`` (nested subgraphs)."""
    scan_body = helper.make_graph([helper.make_node("Identity", ["s_in"], ["s_out"])], "scan_body",
                                  [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2])])
    loop_body = helper.make_graph(
        [helper.make_node("Scan", ["v"], ["v_out"], body=scan_body, num_scan_inputs=1),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "loop_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2, 2])])
    then_branch = helper.make_graph([helper.make_node("Relu", ["w"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 2])])
    else_branch = helper.make_graph(
        [helper.make_node("Loop", ["", "c", "w"], ["e"], body=loop_body)], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "subgraphs", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2, 2], np.ones(4))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_operators_inside_subgraphs_count(tmp_path: Path) -> None:
    definition, _ = Definition.from_model(_model_with_subgraphs())

    ops = graph_operators(definition.proto)
    reason = _policy(tmp_path, 'operators = ["If", "Loop", "Identity", "Relu"]').check(definition)

    assert ops == {"If", "Relu", "Loop", "Scan", "Identity"}
    assert reason == "site policy: operator Scan is not allowed"


def test_a_local_function_counts_as_the_operators_of_its_body(tmp_path: Path) -> None:
    definition, _ = Definition.from_model(function_mlp())

    assert graph_operators(definition.proto) == {"Gemm", "Relu"}
    assert _policy(tmp_path, 'operators = ["Gemm"]').check(definition) == (
        "site policy: operator Relu is not allowed")


def test_too_few_rows_are_refused_with_both_numbers(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "min-rows = 1_500")

    assert policy.check(rows=1500) is None
    assert policy.check(rows=1234) == "site policy: 1,234 rows are fewer than min-rows 1,500"
    assert policy.check(rows=1) == "site policy: 1 row is fewer than min-rows 1,500"
