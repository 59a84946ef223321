"""Standalone ONNX files of registry versions, with a model card in ``metadata_props``.

:func:`write_model` writes a file whole or not at all: the bytes go to a temporary file beside the
target (flushed and fsynced), which is then renamed into place; if anything fails, the temporary file
and any directory the call created are removed, so a failed export leaves nothing behind. An existing
file is replaced only when asked to (the rename is then a hard link, which fails rather than replace
a file that appeared in the meantime).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from flonnx.exchange.card import example_inputs, measured_card, stable_card
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.evaluation import served_model
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing, wrap_model
from flonnx.exchange.registry import Registry
from flonnx.exchange.signed_export import signature_card

__all__ = [
    "PARITY_ATOL", "PARITY_RTOL", "check_loadable", "check_parity", "export_version", "probe_rows",
    "served_version", "write_bytes", "write_model",
]

#: Parity of a full-precision export with the registry's weights:
#: ``|file - registry| <= ATOL + RTOL·|registry|`` on every output of :func:`probe_rows` (both run
#: by ONNX Runtime; a faithful export is bit-equal).
PARITY_RTOL = 1e-5
PARITY_ATOL = 1e-6
PROBE_ROWS = 32

#: ``link`` errors of file systems without hard links: there, an existence check and a rename.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS})


def _model_card(version_id: str, record: VersionRecord, n_params: int) -> dict[str, str]:
    card = {
        "flonnx.version_id": version_id,
        "flonnx.kind": record.kind.value,
        "flonnx.round": str(record.round),
        "flonnx.definition_id": record.definition_id,
        "flonnx.weights_id": record.weights_id,
        "flonnx.parents": ",".join(record.parents),
        "flonnx.parameter_count": str(n_params),
        "flonnx.lineage": record.canonical_bytes().decode("utf-8"),
    }
    card.update({f"flonnx.metric.{k}": repr(float(v)) for k, v in sorted(record.metrics.items())})
    if record.strategy:
        card["flonnx.strategy"] = record.strategy
    return card


def served_version(registry: Registry, version_id: str) -> tuple[VersionRecord, onnx.ModelProto]:
    """The record of ``version_id`` and its served model, before any card is added.

    Raises:
        FlonnxError: ``version_id`` is a rejected reply, which has no weights.
    """
    record = registry.record(version_id)
    if record.kind is VersionKind.REJECTED:
        raise FlonnxError(f"version {version_id[:12]} is a rejected reply: it has no weights "
                          f"(flonnx lineage show {version_id[:12]} says why it was rejected)")
    definition = registry.get_definition(record.definition_id)
    weights = registry.get_weights(record.weights_id)
    model = served_model(definition, weights)  # takes raw features: preprocessing included
    model.producer_name = "flonnx"
    return record, model


def export_version(registry: Registry, version_id: str, *, measure: bool = False) -> onnx.ModelProto:
    """The full model of ``version_id``, validated before anyone writes it.

    Its ``metadata_props`` carry the model card (:mod:`flonnx.exchange.card`): the stable card
    always, ONNX Runtime's timings on this machine (``flonnx.measured.*``) when ``measure``. It
    passes ``onnx.checker`` (full check), loads in ONNX Runtime, and its outputs equal those of the
    registry's ``definition.materialize(weights)`` (:func:`check_parity`).

    Raises:
        FlonnxError: ``version_id`` is a rejected reply, which has no weights, or a check failed
            (one line: which check, and why).
    """
    record, model = served_version(registry, version_id)
    weights = registry.get_weights(record.weights_id)
    n_params = int(sum(np.size(w) for w in weights.values()))
    card = _model_card(version_id, record, n_params)
    card.update(stable_card(registry, version_id, model))
    card.update(signature_card(registry, version_id))  # what `flonnx verify-model` checks
    for key, value in card.items():
        model.metadata_props.add(key=key, value=value)
    check_loadable(model, f"export of {version_id[:12]}")  # before anything runs it
    check_parity(model, registry, version_id)
    if measure:
        for key, value in measured_card(model, example_inputs(model)).items():
            model.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(model, full_check=True)
    return model


def check_loadable(model: onnx.ModelProto, what: str) -> None:
    """``onnx.checker`` (full check) and an ONNX Runtime session; :class:`FlonnxError` in one line if not."""
    from flonnx.exchange.ort import session

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; all mean "not written"
        raise FlonnxError(f"{what} refused: onnx.checker full check failed: {_one_line(exc)}") from None
    try:
        session(model)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors have no common base class
        raise FlonnxError(f"{what} refused: ONNX Runtime cannot load it: {_one_line(exc)}") from None


def probe_rows(model: onnx.ModelProto, *, rows: int = PROBE_ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for every data input of ``model`` (dynamic dimensions become ``rows``).

    Numbers are standard normal; text inputs (categorical columns) cycle through a few values.
    """
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else rows for d in tensor.shape.dim]
        if tensor.elem_type == onnx.TensorProto.STRING:
            words = np.array(["", "a", "b", "F", "M"], dtype=object)
            out[value.name] = words[rng.integers(0, len(words), size=shape)]
        else:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            out[value.name] = rng.standard_normal(shape).astype(dtype)
    return out


def check_parity(model: onnx.ModelProto, registry: Registry, version_id: str) -> None:
    """The file's outputs equal those of the registry's ``definition.materialize(weights)``.

    The reference is rebuilt from the registry (with the federation's preprocessing wrapped around
    it, as the file has it); both run with ONNX Runtime on :func:`probe_rows`, and every output must
    agree within ``PARITY_ATOL + PARITY_RTOL·|reference|``.

    Raises:
        FlonnxError: the outputs differ (one line, naming the output and the largest difference).
    """
    from flonnx.exchange.ort import run_model

    record = registry.record(version_id)
    definition = registry.get_definition(record.definition_id)
    reference = definition.materialize(registry.get_weights(record.weights_id))
    if METADATA_KEY in definition.metadata:
        reference = wrap_model(reference, Preprocessing.from_json(definition.metadata[METADATA_KEY]))
    inputs = probe_rows(reference)
    what = f"export of {version_id[:12]} refused: its outputs differ from the registry's weights"
    try:
        got, want = run_model(model, inputs), run_model(reference, inputs)
    except Exception as exc:  # noqa: BLE001 - e.g. the file takes other inputs than the registry's model
        raise FlonnxError(f"{what} ({_one_line(exc)})") from None
    if sorted(got) != sorted(want):
        raise FlonnxError(f"{what} (outputs {sorted(got)} instead of {sorted(want)})")
    for name in sorted(want):
        a, b = np.asarray(got[name]), np.asarray(want[name])
        if a.shape != b.shape or a.dtype != b.dtype:
            raise FlonnxError(f"{what} (output {name!r}: {a.dtype}{list(a.shape)} instead of "
                              f"{b.dtype}{list(b.shape)})")
        if b.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                raise FlonnxError(f"{what} (output {name!r} differs)")
            continue
        if not np.allclose(a, b, rtol=PARITY_RTOL, atol=PARITY_ATOL, equal_nan=True):
            worst = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            raise FlonnxError(f"{what} (output {name!r}: max |difference| {worst:.3g} > tolerance "
                              f"{PARITY_ATOL:g} + {PARITY_RTOL:g}·|value|)")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def write_model(model: onnx.ModelProto, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` whole or not at all (see the module docstring).

    Args:
        model: The model to serialise.
        path: The file to write; missing parent directories are created.
        overwrite: Replace ``path`` if it exists (else an existing file is an error).

    Raises:
        FlonnxError: ``path`` is a directory, exists (without ``overwrite``), or cannot be written (a
            read-only directory, a path under ``/proc``), in one line naming it and the reason.
    """
    return write_bytes(model.SerializeToString(), path, overwrite=overwrite)


def write_bytes(data: bytes, path: str | Path, *, overwrite: bool = False,
                command: str = "flonnx export") -> Path:
    """Write ``data`` to ``path`` whole or not at all, as :func:`write_model` does.

    ``command`` is the command a refusal to replace ``path`` names (``COMMAND --force`` replaces it).
    """
    path = Path(path)
    if path.is_dir():
        raise FlonnxError(f"{path} is a directory; name the file to write, e.g. {path / 'model.onnx'}")
    if path.exists() and not overwrite:  # checked again, atomically, when the file is linked
        raise _exists(path, command)
    created: list[Path] = []
    tmp: str | None = None
    try:
        created = _make_parents(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _rename(tmp, path, overwrite, command)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _remove(created)
        if isinstance(exc, OSError):
            raise FlonnxError(f"cannot write {path}: {_reason(exc, path)}") from None
        raise
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)  # after a rename it is gone; after a link, a second name
    return path


def _reason(exc: OSError, path: Path) -> str:
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    if exc.errno != errno.ENOENT:
        return reason
    existing = path.parent  # it existed, or was created: a file system such as /proc refused the file
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return f"{existing} does not take new files ({reason})"


def _exists(path: Path, command: str = "flonnx export") -> FlonnxError:
    return FlonnxError(f"{path} exists; not replaced ({command} --force replaces it)")


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; returns the ones created, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{directory} is a file, not a directory")
    created: list[Path] = []
    try:
        for new in reversed(missing):
            new.mkdir()
            created.append(new)
    except BaseException:
        _remove(created)
        raise
    return created


def _remove(directories: list[Path]) -> None:
    """Remove directories this call created (innermost first), if they are still empty."""
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _rename(tmp: str, path: Path, overwrite: bool, command: str) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path, command) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if path.exists():
            raise _exists(path, command) from None
        os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    """Make the new name durable; a file system that cannot fsync a directory is left as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
