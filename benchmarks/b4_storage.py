"""B4 storage: registry bytes per round by number of clients and model size, retention and compression.

Each configuration runs the same seeded federation four times, into four fresh registries:
retention ``all`` or ``last:1`` × compression off or on (``[registry]`` in the spec; the CLI's
``flonnx simulate --retention last:1 --compress``). The federation runs in this process, without
Ray: :class:`tests.server.local_grid.LocalGrid` (what the server tests use) hands each message to
flonnx's ClientApp; scikit-learn nodes, digits (64 features, 10 classes), FedAvg, one local epoch,
an MLP ``64-H-10`` written with onnx.helper (``tests.tiny_models.gemm_mlp``). Retention and
compression change only what is stored, never what is trained, so the four runs must end on the same
version id (checked, ``same_final_version``).

After every round (its commit and prune) the sizes of the files under ``blobs/`` are summed;
``registry.db`` (+ its ``-wal``) is measured at the end: its rows are the same in the four runs.
Bytes per round = blob bytes added by the last round (the steady state: with ``last:1`` a round's
updates replace the previous round's). ``shuffle_gain`` compares, over the update blobs of the plain
run, zlib alone with the 4-byte-plane shuffle + zlib that compressed blobs use.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/b4_storage.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, write_result  # noqa: E402

NAME = "b4_storage"
COMMAND = "python -m benchmarks.b4_storage"
VARIANTS = [("all", False), ("all", True), ("last:1", False), ("last:1", True)]


def _blob_bytes(registry: Path) -> int:
    return sum(p.stat().st_size for p in (registry / "blobs").rglob("*") if p.is_file())


def _database_bytes(registry: Path) -> int:
    return sum(p.stat().st_size for p in registry.glob("registry.db*") if p.is_file())


def run_one(folder: Path, clients: int, hidden: int, rounds: int, retention: str,
            compress: bool) -> dict[str, Any]:
    """One in-process federation into a fresh registry under ``folder``; its sizes."""
    import onnx

    from flonnx.client.app import app as client_app
    from flonnx.exchange.registry import Registry
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter, RoundSummary
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid
    from tests.tiny_models import gemm_mlp

    registry = folder / f"{retention.replace(':', '')}-{'z' if compress else 'plain'}"
    model = folder / "model.onnx"
    if not model.exists():
        definition, weights = gemm_mlp(64, hidden, 10)
        onnx.save(definition.materialize(weights), model)
    config = {"num-server-rounds": rounds, "frameworks": f"sklearn:{clients}", "clients": clients,
              "local-epochs": 1, "seed": 0}
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": clients,
                                         "model": str(model), **config})
    settings = replace(settings, spec=settings.spec.with_overrides(
        {"registry.retention": retention, "registry.compress": compress, "evaluate-sites": False}))
    after: list[int] = []

    class Sizes(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            after.append(_blob_bytes(registry))

        def round(self, summary: RoundSummary) -> None:
            after.append(_blob_bytes(registry))

    started = time.perf_counter()
    run_id = Federation(LocalGrid(client_app, clients, dict(config)), settings, Sizes()).run()
    seconds = time.perf_counter() - started
    with Registry(registry, create=False) as reg:
        final = reg.heads(run_id)[rounds]
        updates = [v.record.weights_id for v in reg.versions(run_id)
                   if v.record.kind.value == "client_update"]
        shuffle = _shuffle_gain(reg, updates) if (retention, compress) == ("all", False) else None
    return {"retention": retention, "compress": compress, "final_version": final,
            "blob_bytes_after_round": after, "bytes_per_round": after[-1] - after[-2],
            "blob_bytes": after[-1], "database_bytes": _database_bytes(registry),
            "seconds": round(seconds, 2), **({"shuffle_gain": shuffle} if shuffle else {})}


def _shuffle_gain(reg: Any, blob_ids: list[str]) -> dict[str, Any]:
    """Over these blobs: raw bytes, zlib alone, and the stored compressed form (shuffle + zlib)."""
    from flonnx.exchange.blobstore import compress

    raw = zlib_only = shuffled = 0
    for blob_id in blob_ids:
        data = reg.blobs.get(blob_id)
        raw += len(data)
        zlib_only += len(zlib.compress(data, 1))
        shuffled += len(compress(data))
    return {"raw": raw, "zlib": zlib_only, "shuffle_zlib": shuffled}


def measure(clients: int, hidden: int, rounds: int) -> dict[str, Any]:
    """The four variants of one configuration."""
    with tempfile.TemporaryDirectory(prefix="b4-") as tmp:
        variants = [run_one(Path(tmp), clients, hidden, rounds, r, c) for r, c in VARIANTS]
    base = variants[0]["bytes_per_round"]
    for v in variants:
        v["saved_per_round"] = base - v["bytes_per_round"]
        v["saved_share"] = round(v["saved_per_round"] / base, 4) if base else 0.0
    parameters = 64 * hidden + hidden + 10 * hidden + 10
    return {"clients": clients, "hidden": hidden, "model": f"mlp-64-{hidden}-10",
            "parameters": parameters, "rounds": rounds,
            "same_final_version": len({v["final_version"] for v in variants}) == 1,
            "variants": variants}


def run(quick: bool) -> dict[str, Any]:
    """B4 over clients × model size (quick: 2 × 2 configurations, 2 rounds)."""
    clients = (2, 6) if quick else (2, 6, 12)
    hidden = (16, 512) if quick else (16, 256, 2048)
    rounds = 2 if quick else 4
    configurations = [measure(c, h, rounds) for h in hidden for c in clients]
    return {
        "command": f"{COMMAND}{' --quick' if quick else ''}",
        "configurations": configurations,
        "notes": [
            "in-process federation (tests.server.local_grid.LocalGrid), no Ray: the spec of "
            "`flonnx simulate digits-mixed --model MODEL.onnx --clients N --frameworks sklearn:N "
            "--rounds R --seed 0 [--retention last:1] [--compress]` with local-epochs = 1 and "
            "evaluate-sites = false",
            "bytes per round = blob bytes added by the last round (after its commit and prune)",
            "database bytes (registry.db + -wal) are the same rows in every variant: retention keeps "
            "rows and drops blob bytes",
            "compression: 4-byte-plane shuffle then zlib level 1 (exchange/blobstore.py)",
        ],
    }


def render(doc: dict[str, Any]) -> list[str]:
    """B4's section of docs/benchmarks.md."""
    res = doc["results"]
    out = ["## B4 storage", "",
           f"Command: `{res['command']}` ({doc['mode']}, {doc['created']}). Registry blob bytes added "
           "per round (the last round, after its commit and prune) by the same seeded federation "
           "with retention `all` / `last:1` and compression off / on; saved = against `all`, "
           "uncompressed. In-process federation without Ray (scikit-learn nodes, digits, FedAvg).",
           "", "| model (parameters) | clients | retention | compress | bytes / round | saved | "
           "blob bytes after all rounds | same final version |", "|---|---|---|---|---|---|---|---|"]
    for c in res["configurations"]:
        for v in c["variants"]:
            out.append(f"| {c['model']} ({c['parameters']:,}) | {c['clients']} | {v['retention']} | "
                       f"{'on' if v['compress'] else 'off'} | {v['bytes_per_round']:,} | "
                       f"{100 * v['saved_share']:.0f} % | {v['blob_bytes']:,} | "
                       f"{'yes' if c['same_final_version'] else 'NO'} |")
    gains = [v["shuffle_gain"] for c in res["configurations"] for v in c["variants"] if "shuffle_gain" in v]
    if gains:
        raw, plain, shuffled = (sum(g[k] for g in gains) for k in ("raw", "zlib", "shuffle_zlib"))
        out += ["", f"Update blobs of the plain runs: {raw:,} bytes; zlib alone {100 * plain / raw:.1f} %, "
                f"4-byte-plane shuffle + zlib (what is stored) {100 * shuffled / raw:.1f} % of that."]
    return out + [""] + [f"- {n}" for n in res.get("notes", [])] + [""]


def main() -> None:
    """Run B4 and write benchmarks/results/b4_storage.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    data = run(args.quick)
    path = write_result(NAME, "quick" if args.quick else "full", data, data["command"])
    print("\n".join(render({"results": data, "mode": "quick" if args.quick else "full",
                            "created": "now", "command": data["command"]})))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
