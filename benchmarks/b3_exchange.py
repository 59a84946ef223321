"""B3 exchange throughput: hashing and validating decoded weights vs raw ``hashlib.sha256``.

For an MLP of ``P`` float32 parameters (several tensors), each measured on the same decoded
weights (a dict of numpy arrays, as ``server/replies.py`` holds them):

* ``raw_sha256``: ``hashlib.sha256`` fed each tensor's buffer (no copy) - the floor;
* ``weights_id``: flonnx's weights id (``exchange/hashing.py``: SHA-256 of the canonical encoding,
  streamed tensor by tensor without building it);
* ``validate``: ``Definition.validate`` (names, dtypes, shapes, finiteness - what a reply check runs);
* ``check``: ``validate`` + ``weights_id``, the array work of ``server/replies.py:_check``;
* ``streamed_id_prototype``: the prototype ``weights_id`` was streamed after - the same digest,
  hashing each tensor in place instead of building the encoding first (kept as a cross-check);
* Flower's own encoding, apart: ``Array.numpy()`` decoding of an ``ArrayRecord`` and
  ``ArrayRecord`` construction from numpy.

GB/s is 10^9 bytes of tensor data per second; "% of raw" is raw time / flonnx time. A cProfile of
one ``weights_id`` and one ``validate`` call at the largest size says where the time goes.

``count_hashes`` runs one small in-process round (LocalGrid + Federation, as the server tests do)
with ``hashlib.sha256`` wrapped, and counts how often each client update's bytes are hashed on the
client side and on the server side.
"""

from __future__ import annotations

import cProfile
import hashlib
import io
import pstats
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.common import median, timed
from flonnx.exchange.definition import Definition
from flonnx.exchange.hashing import encode_weights, weights_id

# (input, hidden..., output) widths giving ~1 M and ~10 M parameters
WIDTHS: dict[str, tuple[int, ...]] = {
    "1M": (512, 1024, 448, 10),
    "10M": (2048, 2816, 1408, 10),
}


def mlp(widths: tuple[int, ...], seed: int = 0) -> tuple[Definition, dict[str, np.ndarray]]:
    """A Gemm/Relu MLP of ``widths`` as a flonnx definition and its float32 weights."""
    rng = np.random.default_rng(seed)
    inits, nodes, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        w = rng.standard_normal((b, a), dtype=np.float32) * np.float32(0.01)
        bias = np.zeros(b, np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(bias, f"fc{i}.bias")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out], transB=1))
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        prev = out
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", widths[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return Definition.from_model(model)


def raw_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the tensors' bytes, fed without copies: the floor for any weights hash."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(memoryview(np.ascontiguousarray(weights[name])).cast("B"))  # type: ignore[arg-type]
    return h.hexdigest()


def streamed_weights_id(weights: Mapping[str, np.ndarray]) -> str:
    """The digest of ``weights_id`` without building the encoding (a prototype, not flonnx's code).

    Each tensor's header is hashed, then its buffer in place (no copy).
    """
    h = hashlib.sha256(b"FLONNXW1" + struct.pack("<I", len(weights)))
    for name in sorted(weights, key=lambda n: n.encode("utf-8")):
        array = np.asarray(weights[name])
        if array.dtype.byteorder == ">" or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        name_b, dtype_b = name.encode("utf-8"), array.dtype.str.encode("ascii")
        h.update(struct.pack("<I", len(name_b)) + name_b + struct.pack("<B", len(dtype_b)) + dtype_b
                 + struct.pack(f"<B{array.ndim}QQ", array.ndim, *array.shape, array.nbytes))
        h.update(memoryview(array).cast("B"))  # type: ignore[arg-type]
    return h.hexdigest()


def _profile(fn: Any, top: int = 8) -> list[dict[str, Any]]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    total = stats.total_tt  # type: ignore[attr-defined]
    for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": calls,
                     "tottime_s": tottime, "cumtime_s": cumtime,
                     "share_of_total": tottime / total if total else 0.0})
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:top]


def measure(size: str, widths: tuple[int, ...], repeats: int, profile: bool) -> dict[str, Any]:
    """Timings of every operation for one model size."""
    from flwr.app import Array, ArrayRecord

    definition, weights = mlp(widths)
    nbytes = sum(a.nbytes for a in weights.values())
    def to_record() -> ArrayRecord:  # as server/federation.py builds the messages it sends
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})

    record = to_record()
    ops: dict[str, Any] = {
        "raw_sha256": lambda: raw_sha256(weights),
        "weights_id": lambda: weights_id(weights),
        "encode_weights": lambda: encode_weights(weights),
        "validate": lambda: definition.validate(weights, source="bench"),
        "check": lambda: (definition.validate(weights, source="bench"), weights_id(weights)),
        "flower_array_numpy": lambda: {k: a.numpy() for k, a in record.items()},
        "flower_arrayrecord_from_numpy": to_record,
    }
    if streamed_weights_id(weights) != weights_id(weights):
        raise AssertionError("the streamed prototype does not reproduce weights_id")
    ops["streamed_id_prototype"] = lambda: streamed_weights_id(weights)
    seconds = {name: timed(fn, repeats) for name, fn in ops.items()}
    med = {name: median(s) for name, s in seconds.items()}
    out: dict[str, Any] = {
        "size": size, "widths": list(widths), "parameters": int(nbytes // 4),
        "tensors": len(weights), "bytes": int(nbytes), "repeats": repeats,
        "ops": {
            name: {"median_s": med[name], "seconds": seconds[name],
                   "gb_per_s": nbytes / med[name] / 1e9,
                   "pct_of_raw": 100.0 * med["raw_sha256"] / med[name]}
            for name in ops
        },
    }
    if profile:
        out["profile"] = {"weights_id": _profile(lambda: weights_id(weights)),
                          "validate": _profile(lambda: definition.validate(weights))}
    return out


class _CountingSha256:
    """Stands in for ``hashlib.sha256``: records each digest with the side that asked for it."""

    def __init__(self, real: Any, log: list[tuple[str, str, str]], data: Any = b"",
                 **kwargs: Any) -> None:
        self._h = real(data, **kwargs)
        self._log = log

    def update(self, data: Any) -> None:
        self._h.update(data)

    def _note(self) -> None:
        frame = sys._getframe(2)
        files = []
        while frame is not None:
            files.append(frame.f_code.co_filename)
            frame = frame.f_back  # type: ignore[assignment]
        side = "client" if any("/client/" in f for f in files) else "server"
        names = []
        depth = 2  # the function that asked for the digest: the hashing helper ...
        if sys._getframe(depth).f_code.co_name == "sha256_hex":  # ... or the one that used sha256_hex
            depth += 1
        for code in (sys._getframe(depth + 1).f_code, sys._getframe(depth).f_code):  # caller > helper
            names.append(f"{Path(code.co_filename).parent.name}/{Path(code.co_filename).name}"
                         f":{code.co_name}")
        where = " > ".join(names)
        self._log.append((self._h.hexdigest(), side, where))

    def hexdigest(self) -> str:
        self._note()
        return str(self._h.hexdigest())

    def copy(self) -> Any:
        return self._h.copy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def digest(self) -> bytes:
        self._note()
        return bytes(self._h.digest())


def count_hashes(rounds: int = 1, clients: int = 2,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hashes of each client update's bytes per side, in a small in-process torch federation.

    ``overrides`` are further spec settings (e.g. a client-side DP strategy, whose clipping mod
    replaces each update after training).
    """
    from flonnx.client.app import make_client_app
    from flonnx.exchange.lineage import VersionKind
    from flonnx.exchange.registry import Registry
    from flonnx.exchange.spec import load_spec
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid

    log: list[tuple[str, str, str]] = []
    real = hashlib.sha256
    spec = load_spec("digits-mixed", {"clients": clients, "frameworks": f"torch:{clients}",
                                      "rounds": rounds, "train.local-epochs": 1, **(overrides or {})})
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(spec=spec, registry=str(Path(folder) / "registry"),
                            min_available_nodes=clients)
        grid = LocalGrid(make_client_app(spec), clients)
        hashlib.sha256 = lambda data=b"", **kw: _CountingSha256(real, log, data, **kw)  # type: ignore[assignment,misc]
        try:
            run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]
        finally:
            hashlib.sha256 = real  # type: ignore[misc]
        with Registry(Path(folder) / "registry") as reg:
            versions = reg.versions(run_id)
    updates = {v.record.weights_id for v in versions if v.record.kind is VersionKind.CLIENT_UPDATE}
    per_update: dict[str, Counter[str]] = {w: Counter() for w in updates}
    callers: Counter[str] = Counter()
    for digest, side, where in log:
        if digest in per_update:
            per_update[digest][side] += 1
            callers[f"{side}: {where}"] += 1
    client_counts = [c["client"] for c in per_update.values()]
    server_counts = [c["server"] for c in per_update.values()]
    return {
        "rounds": rounds, "clients": clients, "updates": len(updates),
        "hashes_per_update_client_side": median([float(x) for x in client_counts]),
        "hashes_per_update_server_side": median([float(x) for x in server_counts]),
        "callers": dict(sorted(callers.items())),
        "note": "each update's full encoded bytes, counted by digest; LocalGrid runs both sides in one "
                "process, so the side is told by the stack (flonnx/client/ frames = client side)",
    }


def run(quick: bool, sizes: tuple[str, ...] | None = None, repeats: int | None = None,
        hash_count: bool = True) -> dict[str, Any]:
    """B3's results: per size the timings, GB/s and % of raw; and the hash count of one round."""
    chosen = sizes or tuple(WIDTHS)
    reps = repeats or (9 if quick else 21)
    widths = {name: WIDTHS.get(name) or tuple(int(w) for w in name.split("-")) for name in chosen}
    sizes_out = [measure(name, w, reps, profile=(name == chosen[-1])) for name, w in widths.items()]
    out: dict[str, Any] = {"target_pct_of_raw": 80.0, "sizes": sizes_out}
    if hash_count:
        out["hash_count"] = count_hashes()
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=1, default=str)[:4000])
    _ = onnx
