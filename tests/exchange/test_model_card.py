"""One id per definition: an exported file's model card is not part of its definition id.

``flonnx export`` adds a model card (``flonnx.version_id``, metrics, lineage, …) to the file;
``flonnx check`` of that file must show the registry's definition id, and name the version. When the
federation's preprocessing is wrapped into the exported graph, the file's graph is a different one
with its own id, and ``check`` names the definition it was exported from as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from typer.testing import CliRunner

from flonnx import cli
from flonnx.cli import app
from flonnx.exchange.check import check_model
from flonnx.exchange.definition import Definition, is_model_card_key
from flonnx.exchange.export import export_version, write_model
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.models import with_metadata
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry


def _linear() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _exported(tmp_path: Path, metadata: dict[str, str]) -> tuple[Definition, str, Path]:
    """(definition, version id, exported file) of a one-version registry."""
    definition, weights = with_metadata(_linear(), {"flonnx.model": "linear", **metadata})
    with Registry(tmp_path / "registry") as registry:
        run_id = registry.create_run("card", 0, {})
        record = VersionRecord(VersionKind.INITIAL, 0, registry.put_definition(definition),
                               registry.put_weights(weights), metrics={"accuracy": 0.5})
        registry.commit(run_id, [record], head_round=0, head=record.version_id)
        path = write_model(export_version(registry, record.version_id), tmp_path / "model.onnx")
    return definition, record.version_id, path


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(highlight=False, width=400))


def test_an_exported_file_has_the_definition_id_of_its_version(tmp_path: Path) -> None:
    definition, version_id, path = _exported(tmp_path, {})
    exported = onnx.load(str(path))

    report = check_model(path)
    printed = CliRunner().invoke(app, ["check", str(path)]).output

    assert Definition.from_model(exported)[0].id == definition.id
    assert report.definition_id == definition.id
    assert report.exported_from == {"version_id": version_id, "definition_id": definition.id}
    assert f"definition {definition.id[:12]} · " in printed
    assert f"exported from version {version_id[:12]}\n" in printed


def test_every_key_export_adds_is_a_model_card_key(tmp_path: Path) -> None:
    definition, _, path = _exported(tmp_path, {})

    added = {p.key for p in onnx.load(str(path)).metadata_props} - set(definition.metadata)

    assert {"flonnx.version_id", "flonnx.definition_id", "flonnx.lineage", "flonnx.metric.accuracy"} <= added
    assert all(is_model_card_key(key) for key in added)
    assert not any(is_model_card_key(key) for key in definition.metadata)


def test_a_file_whose_preprocessing_was_wrapped_names_the_definition_it_came_from(tmp_path: Path) -> None:
    pre = Preprocessing((0.1, 0.2, 0.3), (1.0, 2.0, 4.0))
    definition, version_id, path = _exported(tmp_path, {METADATA_KEY: pre.to_json()})

    report = check_model(path)
    printed = CliRunner().invoke(app, ["check", str(path)]).output

    assert report.definition_id != definition.id  # its graph standardises the raw columns itself
    assert report.exported_from == {"version_id": version_id, "definition_id": definition.id}
    assert (f"exported from version {version_id[:12]} of definition {definition.id[:12]} (its "
            "preprocessing is part of this file's graph)") in printed
