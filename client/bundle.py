r"""Which Flower app bundle (FAB) this node runs under, as a content digest for the lineage.

Under Flower's Deployment Engine (``flwr run`` to a SuperLink), the SuperNode installs the run's FAB
into ``$FLWR_HOME/apps/<publisher>.<name>.<version>.<hash8>`` and the ClientApp process puts that
directory on ``sys.path`` before it loads the app (``flwr.common.config.get_project_dir``,
``flwr.supercore.object_ref``). Every update records the SHA-256 of that directory's files as
``bundle`` in its environment, so a site and the coordinator can tell which bundle an update was
made under. The digest is canonical:

    sha256( for each regular file, sorted by its path relative to the bundle directory
            (POSIX separators, compared as UTF-8 bytes), the line
            "<sha256 hex of the file>  <relative path>\n" )

i.e. what ``cd BUNDLE && find . -type f -not -path '*/__pycache__/*' -printf '%P\n' | LC_ALL=C sort
| xargs -d '\n' sha256sum | sha256sum`` prints. Symbolic links and ``__pycache__`` folders (bytecode
Python may write there after installation) are left out.

``""`` when the node does not run under an installed bundle (``flwr.simulation.run_simulation``,
the tests' in-process grid, a ClientApp started from a source tree). A simulated node records
``""`` in any case (``flonnx.client.app``): under ``flwr run`` its bundle is the coordinator's, and
the ids of ``flwr run`` and ``flonnx simulate`` for one spec and seed stay the same.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from flwr.common.constant import APP_DIR
from flwr.supercore.utils import get_flwr_home

__all__ = ["bundle_digest", "bundle_directory", "directory_digest"]


def bundle_directory() -> Path | None:
    """The installed bundle on ``sys.path`` (the first, i.e. the one imports resolve in), or None."""
    apps = _resolved(get_flwr_home() / APP_DIR)
    for entry in sys.path:
        if not entry:
            continue
        path = _resolved(Path(entry))
        if path.parent == apps and path.is_dir():
            return path
    return None


def directory_digest(directory: Path) -> str:
    """The canonical digest of ``directory``'s files (module docstring)."""
    files: list[tuple[bytes, str]] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(directory).as_posix()
            files.append((relative.encode("utf-8"), _file_sha256(path)))
    manifest = hashlib.sha256()
    for path_bytes, file_digest in sorted(files):
        manifest.update(f"{file_digest}  ".encode("ascii") + path_bytes + b"\n")
    return manifest.hexdigest()


def bundle_digest() -> str:
    """The digest of the bundle this node runs under, or ``""`` outside one."""
    directory = bundle_directory()
    return directory_digest(directory) if directory is not None else ""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):
        return path
