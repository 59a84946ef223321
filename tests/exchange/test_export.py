"""``flonnx export``: one line per mistake, no file replaced unless --force, nothing left by a failure."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.export import write_model
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from tests.tiny_models import gemm_mlp
from tests.unprivileged import run, without_dac_override


@pytest.fixture()
def registry(tmp_path: Path) -> tuple[Path, str, str]:
    """A registry with one run: its initial version and a rejected reply of round 1."""
    root = tmp_path / "registry"
    definition, weights = gemm_mlp(4, 8, 2)
    with Registry(root) as reg:
        run_id = reg.create_run("test", 0, {})
        reg.put_definition(definition)
        initial = VersionRecord(kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                                weights_id=reg.put_weights(weights))
        rejected = VersionRecord(kind=VersionKind.REJECTED, round=1, definition_id=definition.id,
                                 weights_id="", parents=(initial.version_id,), client="partition-1",
                                 reason="UnsupportedTraining: proximal-mu > 0")
        reg.commit(run_id, [initial, rejected], head_round=0, head=initial.version_id)
    return root, initial.version_id, rejected.version_id


def _export(registry: Path, version: str, output: Path, *extra: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["export", version, "-o", str(output), "--registry", str(registry),
                                      *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output.strip().splitlines()


def test_exports_a_version_with_its_model_card(registry: tuple[Path, str, str], tmp_path: Path) -> None:
    root, initial, _ = registry

    code, lines = _export(root, initial[:10], tmp_path / "out" / "model.onnx")

    assert (code, lines) == (0, [f"wrote {tmp_path / 'out' / 'model.onnx'} (version {initial[:12]})"])
    card = {p.key: p.value for p in onnx.load(tmp_path / "out" / "model.onnx").metadata_props}
    assert card["flonnx.version_id"] == initial
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx"]  # no temporary left


def test_a_rejected_version_has_no_weights(registry: tuple[Path, str, str], tmp_path: Path) -> None:
    root, _, rejected = registry

    code, lines = _export(root, rejected, tmp_path / "model.onnx")

    assert code == 1
    assert lines == [f"error: version {rejected[:12]} is a rejected reply: it has no weights (flonnx "
                     f"lineage show {rejected[:12]} says why it was rejected)"]
    assert not (tmp_path / "model.onnx").exists()


def test_refuses_to_replace_an_existing_file_unless_forced(
    registry: tuple[Path, str, str], tmp_path: Path,
) -> None:
    root, initial, _ = registry
    output = tmp_path / "model.onnx"
    output.write_bytes(b"precious")

    refused = _export(root, initial, output)
    kept = output.read_bytes()
    forced = _export(root, initial, output, "--force")

    assert refused == (1, [f"error: {output} exists; not replaced (flonnx export --force replaces it)"])
    assert kept == b"precious"
    assert forced[0] == 0
    assert onnx.load(output).metadata_props[0].value == initial
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "registry"]


def test_an_existing_directory_is_one_line(registry: tuple[Path, str, str], tmp_path: Path) -> None:
    root, initial, _ = registry
    (tmp_path / "models").mkdir()

    for extra in ((), ("--force",)):
        code, lines = _export(root, initial, tmp_path / "models", *extra)

        assert code == 1
        assert lines == [f"error: {tmp_path / 'models'} is a directory; name the file to write, e.g. "
                         f"{tmp_path / 'models' / 'model.onnx'}"]
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("output", ["/proc/model.onnx", "/proc/flonnx-test/deeper/model.onnx"])
def test_a_path_under_proc_is_one_line(registry: tuple[Path, str, str], output: str) -> None:
    root, initial, _ = registry

    code, lines = _export(root, initial, Path(output))

    assert code == 1
    assert lines == [f"error: cannot write {output}: /proc does not take new files (no such file or "
                     "directory)"]


def test_a_read_only_directory_is_one_line(registry: tuple[Path, str, str], tmp_path: Path) -> None:
    root, initial, _ = registry
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)

    done = run(without_dac_override([sys.executable, "-m", "flonnx.cli", "export", initial,
                                     "-o", str(folder / "model.onnx"), "--registry", str(root)]))

    assert done.returncode == 1, done.stdout + done.stderr
    assert (done.stdout + done.stderr).strip().splitlines() == [
        f"error: cannot write {folder / 'model.onnx'}: permission denied"]
    assert list(folder.iterdir()) == []


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    definition, weights = gemm_mlp(4, 8, 2)
    output = tmp_path / "new" / "deeper" / "model.onnx"

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(FlonnxError, match=f"cannot write {output}: no space left on device"):
        write_model(definition.materialize(weights), output)

    assert list(tmp_path.iterdir()) == []  # no temporary file and no directory the write created
