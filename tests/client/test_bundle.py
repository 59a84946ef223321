"""The app bundle digest: which installed FAB a node runs under, hashed canonically."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flonnx.client.bundle import bundle_digest, bundle_directory, directory_digest


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed bundle under a fake FLWR_HOME, on sys.path as Flower puts it."""
    home = tmp_path / "flwr-home"
    directory = home / "apps" / "flonnx.flonnx.0.1.0.0123abcd"
    (directory / "docs" / "deep").mkdir(parents=True)
    (directory / "pyproject.toml").write_text('[tool.flwr.app]\npublisher = "flonnx"\n')
    (directory / "README.md").write_text("# flonnx\n")
    (directory / "docs" / "deep" / "été.txt").write_bytes(b"\x00\x01binary")
    (directory / ".info").mkdir()
    (directory / ".info" / "CONTENT").write_text("pyproject.toml,abc,12\n")
    monkeypatch.setenv("FLWR_HOME", str(home))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "elsewhere"), str(directory), *sys.path])
    return directory


def _expected(directory: Path, files: list[str]) -> str:
    lines = "".join(f"{hashlib.sha256((directory / f).read_bytes()).hexdigest()}  {f}\n"
                    for f in sorted(files, key=lambda f: f.encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_the_digest_hashes_the_sorted_relative_paths_and_each_file_s_sha256(bundle: Path) -> None:
    files = ["pyproject.toml", "README.md", "docs/deep/été.txt", ".info/CONTENT"]

    assert bundle_directory() == bundle.resolve()
    assert bundle_digest() == _expected(bundle, files)


@pytest.mark.skipif(not (shutil.which("find") and shutil.which("sha256sum") and shutil.which("xargs")),
                    reason="needs GNU find, xargs and sha256sum")
def test_the_digest_is_what_the_documented_shell_pipeline_prints(bundle: Path) -> None:
    (bundle / "__pycache__").mkdir()
    (bundle / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    pipeline = ("find . -type f -not -path '*/__pycache__/*' -printf '%P\\n' | LC_ALL=C sort "
                "| xargs -d '\\n' sha256sum | sha256sum")

    done = subprocess.run(["sh", "-c", pipeline], cwd=bundle, capture_output=True, text=True, check=True)

    assert done.stdout.split()[0] == bundle_digest()


def test_bytecode_and_symbolic_links_do_not_change_the_digest(bundle: Path, tmp_path: Path) -> None:
    before = bundle_digest()
    (bundle / "__pycache__").mkdir()
    (bundle / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"bytecode")
    (tmp_path / "outside.txt").write_text("not in the bundle")
    (bundle / "link.txt").symlink_to(tmp_path / "outside.txt")

    assert bundle_digest() == before


@pytest.mark.parametrize("change", ["content", "new file", "rename"])
def test_any_change_to_a_bundle_file_changes_the_digest(bundle: Path, change: str) -> None:
    before = bundle_digest()
    if change == "content":
        (bundle / "README.md").write_text("# flonnx, edited\n")
    elif change == "new file":
        (bundle / "extra.py").write_text("print('hello')\n")
    else:
        (bundle / "README.md").rename(bundle / "README.txt")

    assert bundle_digest() != before


def test_outside_a_bundle_the_digest_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "flwr-home"
    not_a_bundle = home / "elsewhere" / "flonnx.flonnx.0.1.0.0123abcd"  # not under apps/
    not_a_bundle.mkdir(parents=True)
    (home / "apps").mkdir()
    monkeypatch.setenv("FLWR_HOME", str(home))
    monkeypatch.setattr(sys, "path", [str(not_a_bundle), str(home / "apps"), *sys.path])

    assert bundle_directory() is None
    assert bundle_digest() == ""


def test_the_first_bundle_on_sys_path_is_the_one_imports_resolve_in(
    bundle: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = bundle.parent / "flonnx.flonnx.0.0.9.89abcdef"
    later.mkdir()
    (later / "pyproject.toml").write_text("older\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(later)])

    assert bundle_directory() == bundle.resolve()
    assert directory_digest(later) != bundle_digest()


def test_a_simulated_node_records_no_bundle_so_flwr_run_and_simulate_ids_agree(
    bundle: Path, mlp_model,  # type: ignore[no-untyped-def]
) -> None:
    import json

    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from flonnx.client.app import app as client_app
    from flonnx.exchange import wire

    definition, _ = mlp_model
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    message = Message(RecordDict({wire.HELLO: ConfigRecord({
        wire.HELLO_TASK: "classification", wire.HELLO_PROTOCOL: wire.PROTOCOL_VERSION,
        wire.HELLO_DEFINITION: definition.canonical_bytes})}), dst_node_id=7, message_type="query")
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 0, "num-partitions": 6,
                                                        "framework": "torch"},
                      state=RecordDict(), run_config={})

    reply = client_app(message, context)  # the environment travels once, in the hello reply

    environment = json.loads(str(reply.content[wire.HELLO][wire.REPLY_ENVIRONMENT]))
    assert bundle_digest() != ""
    assert environment["bundle"] == ""
    assert "flonnx" in environment
