"""Commands that meet file modes and read-only mounts as a user does, though the tests run as root.

Root ignores file modes (``CAP_DAC_OVERRIDE``), so a test of "cannot write there" as root proves
nothing. :func:`without_dac_override` runs a command through ``setpriv`` (util-linux, on every Debian)
with ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` dropped from the bounding set: it still runs as
root, with the venv's Python reachable, but a directory of another user, or one without ``w``, is not
writable. Run by another user, the command runs as it is. :func:`in_read_only_mount` runs a command
in a private mount namespace (``unshare -m``) where a directory is bind-mounted read-only: writing
there fails with ``EROFS`` whoever you are.

``python -m tests.unprivileged ARGS`` runs the flonnx CLI with Flower's simulation engine replaced by
a tripwire: it prints the CLI's output, then ``engine started`` if a simulation was about to start and
``ray imported`` if anything imported Ray, and exits with the CLI's exit code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_DROPPED = "-dac_override,-dac_read_search"


def without_dac_override(argv: Sequence[str]) -> list[str]:
    """``argv`` run without the capabilities that let root ignore file modes."""
    if os.geteuid() != 0:
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot drop CAP_DAC_OVERRIDE to test "
                    "file modes; apt-get install util-linux", pytrace=False)
    return [setpriv, f"--bounding-set={_DROPPED}", *argv]


def in_read_only_mount(directory: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run where ``directory`` is a read-only bind mount of itself (skips if not permitted)."""
    unshare = shutil.which("unshare")
    probe = None if unshare is None else subprocess.run(
        [unshare, "-m", "mount", "--bind", "-o", "ro", str(directory), str(directory)],
        capture_output=True, text=True)
    if probe is None or probe.returncode != 0:
        pytest.skip("a read-only bind mount needs `unshare -m` with CAP_SYS_ADMIN (root, not in a "
                    f"restricted container): {probe.stderr.strip() if probe else 'no unshare'}")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return [str(unshare), "-m", "sh", "-c", script, str(directory), *argv]


def cli_without_engine(argv: Sequence[str]) -> list[str]:
    """The command line of ``flonnx ARGV`` with the simulation engine replaced by a tripwire."""
    return [sys.executable, "-m", "tests.unprivileged", *argv]


def run(argv: Sequence[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with this repository importable; output captured as text."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _main() -> int:
    from typer.testing import CliRunner

    import flonnx.simulations.runner as runner
    from flonnx.cli import app

    def tripwire(*args: object, **kwargs: object) -> list[str]:
        print("engine started")
        raise SystemExit(3)

    runner.simulate = tripwire  # type: ignore[assignment]
    result = CliRunner().invoke(app, sys.argv[1:])
    print(result.output, end="")
    if "ray" in sys.modules:
        print("ray imported")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(_main())
