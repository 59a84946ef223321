"""Old opsets: a user's file is upgraded and checked against onnx.reference; a received one is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.reference
import onnx.version_converter
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.ort import probe_inputs, run_model
from flonnx.exchange.upgrade import (
    DEFAULT_TARGET_OPSET,
    Conversion,
    ort_status,
    refuse_old_opset,
    upgrade_user_model,
)

PYTORCH_CONVERTED = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"

#: backend-suite layer model -> the kernel ONNX Runtime 1.32 no longer has
OLD_OPSET_CASES = {
    "test_Linear": "Gemm-6",
    "test_BatchNorm2d_eval": "BatchNormalization-6",
    "test_PReLU_2d": "PRelu-6",
    "test_AvgPool2d": "AveragePool-1",
}


def load_suite_model(name: str) -> onnx.ModelProto:
    return onnx.load(PYTORCH_CONVERTED / name / "model.onnx")


def suite_example(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The suite's own input and expected output (computed by PyTorch, independent of onnx)."""
    data = PYTORCH_CONVERTED / name / "test_data_set_0"
    return (numpy_helper.to_array(onnx.load_tensor(data / "input_0.pb")),
            numpy_helper.to_array(onnx.load_tensor(data / "output_0.pb")))


def lstm_at_opset_6() -> onnx.ModelProto:
    """LSTM-1: ONNX Runtime has no kernel for it, and the version converter has no LSTM adapter."""
    hidden, features = 3, 2
    w = numpy_helper.from_array(np.full((1, 4 * hidden, features), 0.1, np.float32), "W")
    r = numpy_helper.from_array(np.full((1, 4 * hidden, hidden), 0.1, np.float32), "R")
    graph = oh.make_graph(
        [oh.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)],
        "old_lstm",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, features]),
         # IR 3: initializers are listed as graph inputs too
         oh.make_tensor_value_info("W", TensorProto.FLOAT, list(w.dims)),
         oh.make_tensor_value_info("R", TensorProto.FLOAT, list(r.dims))],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 2, hidden])],
        [w, r],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 6)], ir_version=3)


def _record_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace onnx.reference and the version converter by recorders that fail if used."""
    calls: list[str] = []

    def reference(*args: object, **kwargs: object) -> None:
        calls.append("ReferenceEvaluator")
        raise AssertionError("onnx.reference must not run here")

    def convert(*args: object, **kwargs: object) -> None:
        calls.append("convert_version")
        raise AssertionError("the version converter must not run here")

    monkeypatch.setattr(onnx.reference, "ReferenceEvaluator", reference)
    monkeypatch.setattr(onnx.version_converter, "convert_version", convert)
    return calls


@pytest.mark.parametrize("name", sorted(OLD_OPSET_CASES))
def test_old_opset_user_model_is_upgraded_and_computes_what_pytorch_did(name: str) -> None:
    model = load_suite_model(name)
    x, expected = suite_example(name)
    before = ort_status(model)

    upgraded, conversion = upgrade_user_model(model)

    assert not before.ok and before.old_opset and before.kernel == OLD_OPSET_CASES[name]
    assert conversion is not None
    assert (conversion.from_opset, conversion.to_opset) == (6, DEFAULT_TARGET_OPSET)
    assert conversion.checked_with == "onnx.reference" and conversion.max_abs_diff <= 1e-4
    assert OLD_OPSET_CASES[name] in conversion.reason
    assert ort_status(upgraded).ok
    (got,) = run_model(upgraded, {model.graph.input[0].name: x}).values()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OLD_OPSET_CASES))
def test_upgraded_model_matches_onnx_reference_on_the_original(name: str) -> None:
    model = load_suite_model(name)
    definition, _ = Definition.from_model(model)
    probes = probe_inputs(definition, batch=3, seed=7)

    upgraded, _ = upgrade_user_model(model)

    (want,) = onnx.reference.ReferenceEvaluator(model).run(None, probes)
    (got,) = run_model(upgraded, probes).values()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["test_Linear", "test_BatchNorm2d_eval", "test_PReLU_2d"])
def test_upgrade_keeps_initializer_names_and_values(name: str) -> None:
    model = load_suite_model(name)
    _, before = Definition.from_model(model)

    upgraded, _ = upgrade_user_model(model)

    _, after = Definition.from_model(upgraded)
    assert before and sorted(after) == sorted(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_model_onnx_runtime_runs_is_returned_unchanged() -> None:
    model = load_suite_model("test_Conv2d")  # opset 6, but ONNX Runtime still has Conv-1

    upgraded, conversion = upgrade_user_model(model)

    assert conversion is None and upgraded is model


def test_model_the_converter_cannot_upgrade_is_refused_with_advice() -> None:
    model = lstm_at_opset_6()
    onnx.checker.check_model(model, full_check=True)

    with pytest.raises(InvalidModel) as caught:
        upgrade_user_model(model)

    message = str(caught.value)
    assert message.startswith("opset 6 model: ONNX Runtime has no kernel for LSTM-1 and the ONNX "
                              "version converter cannot upgrade it to opset 17: ")
    assert "for LSTM" in message and message.endswith("re-export the model with opset 17 or newer")
    assert "\n" not in message and "Assertion" not in message


def test_upgrade_onnx_runtime_cannot_run_is_refused() -> None:
    # opset 6 PRelu broadcast a [C] slope over the channel axis; the converter keeps the [C] slope,
    # which opset 7+ broadcasts over the last axis
    model = load_suite_model("test_PReLU_2d_multiparam")

    with pytest.raises(InvalidModel, match=r"^opset 6 model: ONNX Runtime has no kernel for PRelu-6; "
                       r"the ONNX version converter upgraded it to opset 17 but ONNX Runtime cannot "
                       r"run the result: .*re-export the model with opset 17 or newer$"):
        upgrade_user_model(model)


def test_converter_that_renames_an_initializer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx.version_converter.convert_version

    def renaming(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        out = real(model, target)
        out.graph.initializer[0].name = "renamed"
        for node in out.graph.node:
            node.input[:] = ["renamed" if i == "1" else i for i in node.input]
        return out

    monkeypatch.setattr(onnx.version_converter, "convert_version", renaming)

    with pytest.raises(InvalidModel, match=r"changed its initializers \(dropped or renamed \['1'\]; "
                       r"added floating-point initializers \['renamed'\]\); flonnx federates weights "
                       r"by initializer name"):
        upgrade_user_model(load_suite_model("test_Linear"))


def test_converter_that_changes_a_weight_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx.version_converter.convert_version

    def perturbing(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        out = real(model, target)
        bias = out.graph.initializer[1]
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 1, bias.name))
        return out

    monkeypatch.setattr(onnx.version_converter, "convert_version", perturbing)

    with pytest.raises(InvalidModel, match=r"changed its initializers \(changed '2'\)"):
        upgrade_user_model(load_suite_model("test_Linear"))


def test_upgrade_that_computes_something_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx.version_converter.convert_version

    def scaling(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        out = real(model, target)
        (gemm,) = out.graph.node
        alpha = next(a for a in gemm.attribute if a.name == "alpha")
        alpha.f = 2.0
        return out

    monkeypatch.setattr(onnx.version_converter, "convert_version", scaling)

    with pytest.raises(InvalidModel, match=r"the upgrade to opset 17 computes something other than "
                       r"the original \(onnx.reference\): max abs diff"):
        upgrade_user_model(load_suite_model("test_Linear"))


def test_onnx_runtime_failure_unrelated_to_the_opset_is_not_upgraded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Gemm-13 on int32 is valid ONNX but ONNX Runtime has no int32 Gemm: NOT_IMPLEMENTED, not old
    graph = oh.make_graph(
        [oh.make_node("Gemm", ["a", "b"], ["y"])], "ints",
        [oh.make_tensor_value_info(n, TensorProto.INT32, [2, 2]) for n in ("a", "b")],
        [oh.make_tensor_value_info("y", TensorProto.INT32, [2, 2])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    calls = _record_calls(monkeypatch)

    status = ort_status(model)
    with pytest.raises(InvalidModel, match=r"^ONNX Runtime cannot run the model: .*Gemm\(13\)"):
        upgrade_user_model(model)

    assert not status.ok and not status.old_opset and status.kernel == "Gemm-13"
    assert calls == []


@pytest.mark.parametrize("as_definition", [False, True], ids=["model", "definition"])
def test_received_old_opset_definition_is_refused_without_reference_or_converter(
    monkeypatch: pytest.MonkeyPatch, as_definition: bool,
) -> None:
    model = load_suite_model("test_Linear")
    received: onnx.ModelProto | Definition = (
        Definition.from_bytes(model.SerializeToString()) if as_definition else model
    )
    calls = _record_calls(monkeypatch)

    with pytest.raises(InvalidModel) as caught:
        refuse_old_opset(received)

    assert calls == []
    message = str(caught.value)
    assert message.startswith("received definition uses ai.onnx opset 6 and ONNX Runtime ")
    assert "has no kernel for Gemm-6" in message and "the coordinator must upgrade the model" in message


def test_the_call_recorder_sees_the_trusted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # the refusal test above proves something only if the recorder catches what upgrade_user_model uses
    calls = _record_calls(monkeypatch)

    with pytest.raises(InvalidModel):
        upgrade_user_model(load_suite_model("test_Linear"))

    assert calls == ["convert_version"]


def test_received_upgraded_definition_is_accepted() -> None:
    upgraded, _ = upgrade_user_model(load_suite_model("test_BatchNorm2d_eval"))
    definition = Definition.from_bytes(upgraded.SerializeToString())

    status = refuse_old_opset(definition)

    assert status.ok


def test_conversion_is_plain_json() -> None:
    conversion = Conversion(from_opset=6, to_opset=17, checked_with="onnx.reference",
                            max_abs_diff=2.4e-7, max_rel_diff=1e-6, reason="ONNX Runtime has no kernel "
                            "for Gemm-6", probe_batch=4, probe_seed=0)

    data = json.loads(json.dumps(conversion.to_json()))

    assert data == {"from_opset": 6, "to_opset": 17, "checked_with": "onnx.reference",
                    "max_abs_diff": 2.4e-7, "max_rel_diff": 1e-6,
                    "reason": "ONNX Runtime has no kernel for Gemm-6", "probe_batch": 4, "probe_seed": 0}
    assert conversion.describe().startswith("upgraded from opset 6 to 17 (ONNX Runtime has no kernel")
