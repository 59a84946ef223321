"""A registry a run cannot write is one line, before the simulation engine starts (exchange/writable.py).

The CLI cases run ``flonnx simulate`` in a subprocess whose simulation engine is a tripwire
(tests/unprivileged.py), without the capabilities that let root ignore file modes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from flonnx.exchange.errors import RegistryError
from flonnx.exchange.registry import Registry
from flonnx.exchange.writable import check_registry_writable
from tests.unprivileged import cli_without_engine, in_read_only_mount, run, without_dac_override

NOBODY = 65534


def _simulate_into(
    registry: Path, wrap: Callable[[Sequence[str]], list[str]] = without_dac_override,
) -> tuple[int, list[str]]:
    """``flonnx simulate --registry REGISTRY`` (engine a tripwire): exit code and output lines."""
    argv = cli_without_engine(["simulate", "--clients", "2", "--frameworks", "sklearn:2", "--rounds", "1",
                               "--registry", str(registry)])
    done = run(wrap(argv))
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


def test_rejects_a_registry_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("not a registry")

    with pytest.raises(RegistryError, match=r"the registry .*/runs is a file, not a directory"):
        check_registry_writable(tmp_path / "runs")
    with pytest.raises(RegistryError, match=r"cannot be created: .*/runs is a file, not a directory"):
        check_registry_writable(tmp_path / "runs" / "deeper")
    with pytest.raises(RegistryError, match=r"directory .*/runs is a file, not a directory"):
        check_registry_writable(f"sqlite:///{tmp_path}/runs/registry.db", blobs=str(tmp_path / "blobs"))


def test_accepts_a_new_or_existing_registry_and_creates_nothing(tmp_path: Path) -> None:
    Registry(tmp_path / "old").close()
    before = sorted(tmp_path.rglob("*"))

    check_registry_writable(tmp_path / "new" / "runs")
    check_registry_writable(tmp_path / "old")
    check_registry_writable(f"sqlite:///{tmp_path}/db/registry.db", blobs=str(tmp_path / "blobs"))
    check_registry_writable("postgresql://flonnx@db.invalid/flonnx", blobs=str(tmp_path / "blobs"))

    assert sorted(tmp_path.rglob("*")) == before


def test_rejects_blobs_that_are_a_file(tmp_path: Path) -> None:
    (tmp_path / "blobs").write_text("")

    with pytest.raises(RegistryError, match=r"the registry's blobs .*/blobs is a file"):
        check_registry_writable("postgresql://flonnx@db.invalid/flonnx", blobs=str(tmp_path / "blobs"))


def test_simulate_into_a_file_is_one_line_before_the_engine(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")

    code, lines = _simulate_into(tmp_path / "runs")

    assert code == 1
    assert lines == [f"error: the registry {tmp_path / 'runs'} is a file, not a directory; name a "
                     "directory (or a database URL)"]


@pytest.mark.parametrize("case", ["another user's directory", "a directory without w",
                                  "an existing registry in a read-only directory"])
def test_simulate_into_an_unwritable_registry_is_one_line_before_the_engine(
    tmp_path: Path, case: str,
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    registry = folder / "runs"
    if case == "another user's directory":
        os.chown(folder, NOBODY, NOBODY)
    elif case == "a directory without w":
        folder.chmod(0o555)
    else:
        Registry(registry).close()
        for path in (registry, *registry.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)

    code, lines = _simulate_into(registry)

    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the registry"), lines
    assert lines[0].endswith("permission denied"), lines


def test_simulate_into_a_read_only_file_system_is_one_line_before_the_engine(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()

    code, lines = _simulate_into(mount / "runs", wrap=lambda argv: in_read_only_mount(mount, argv))

    assert code == 1, lines
    assert lines == [f"error: cannot write the registry at {mount / 'runs'} (it would be created in "
                     f"{mount}): read-only file system"]
