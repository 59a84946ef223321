"""Byzantine clients: final accuracy with 20 % malicious clients per robust strategy, next to the clean run.

Usage (from the repository root)::

    PYTHONPATH=. python -m benchmarks.byzantine [--rounds 5] [--clients 20] [--share 0.2]
        [--datasets digits,breast-cancer] [--attacks A,B] [--strategies S,T] [--all]
        [--out benchmarks/results/byzantine]

Every run is an in-process federation on a :class:`tests.server.local_grid.LocalGrid` (no Ray:
48 runs of 20 clients would spend most of their time starting the engine), scikit-learn trainers,
IID partitions, the same seed for every run; the malicious partitions are the spec's
``[byzantine]`` choice (seed 0), so every attacked run of a dataset has the same attackers. Robust
rules are told the true number of attackers (``num-malicious-nodes``); FedTrimmedAvg cuts
``beta = share`` off each end; MultiKrum averages the ``clients - 2f`` best-scored updates.

Sign flip and scaled updates run against all six strategies on both datasets; Gaussian noise,
label flipping and copying run against FedAvg and FedMedian (``--all`` runs them everywhere).
Writes ``OUT.json`` (every run: dataset, strategy, attack, final accuracy, version id, seconds)
and ``OUT.md`` (the table pasted into docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

STRATEGIES = ("fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
EVERYWHERE = ("sign-flip", "scaled")
SOME = ("noise", "label-flip", "copy")
SOME_STRATEGIES = ("fedavg", "fedmedian")
#: per dataset: model and local training (the hospitals and digits presets' settings)
DATASETS: dict[str, dict[str, Any]] = {
    "digits": {"model": "digits-mlp", "standardize": False,
               "train": {"local-epochs": 2, "batch-size": 16, "learning-rate": 0.05}},
    "breast-cancer": {"model": "mlp-30-16-2", "task": "binary", "standardize": True,
                      "train": {"local-epochs": 2, "batch-size": 16, "learning-rate": 0.05}},
}


def strategy_config(strategy: str, clients: int, malicious: int, share: float) -> dict[str, str]:
    """The robust rules' parameters for ``malicious`` attackers among ``clients``."""
    if strategy in ("krum", "bulyan"):
        return {"num-malicious-nodes": str(malicious)}
    if strategy == "multikrum":
        return {"num-malicious-nodes": str(malicious),
                "num-nodes-to-select": str(clients - 2 * malicious)}
    if strategy == "fedtrimmedavg":
        return {"beta": str(share)}
    return {}


def run_one(dataset: str, strategy: str, attack: str | None, *, clients: int, rounds: int,
            share: float, registry: Path, scale: float | None = None) -> dict[str, Any]:
    """One in-process federation; its final accuracy and version id."""
    from flonnx.client.app import make_client_app
    from flonnx.exchange.registry import Registry
    from flonnx.exchange.spec import parse_spec
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid

    malicious = round(share * clients)
    raw: dict[str, Any] = {
        **DATASETS[dataset], "clients": clients, "frameworks": f"sklearn:{clients}", "rounds": rounds,
        "seed": 0, "data": {"source": dataset, "partition": "iid"}, "strategy": strategy,
        "strategy-config": strategy_config(strategy, clients, malicious, share),
        "min-train-nodes": clients, "evaluate-sites": False,
    }
    if attack is not None:
        raw["byzantine"] = {"share": share, "attack": attack, "seed": 0,
                            **({"scale": scale} if scale is not None else {})}
    spec = parse_spec(raw, source=f"byzantine-{dataset}")
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": clients},
                                        spec=spec)
    started = time.perf_counter()
    run_id = Federation(LocalGrid(make_client_app(spec), clients), settings, Reporter()).run()
    seconds = time.perf_counter() - started
    with Registry(registry) as reg:
        heads = reg.heads(run_id)
        final = reg.record(heads[max(heads)])
        rejected = sum(1 for v in reg.versions(run_id) if v.record.kind.value == "rejected")
    return {"dataset": dataset, "strategy": strategy, "attack": attack or "none",
            "accuracy": final.metrics.get("accuracy"), "version": heads[max(heads)],
            "rejected": rejected, "seconds": round(seconds, 1),
            "strategy_config": raw["strategy-config"]}


def plan(datasets: list[str], run_all: bool, only: list[str] | None = None,
         strategies: list[str] | None = None) -> list[tuple[str, str, str | None]]:
    """(dataset, strategy, attack) of every run.

    ``only``: just these attacks, everywhere; ``strategies``: just these strategies.
    """
    runs: list[tuple[str, str, str | None]] = []
    for dataset in datasets:
        for strategy in strategies or STRATEGIES:
            attacks: list[str | None] = [None, *EVERYWHERE]
            if run_all or strategy in SOME_STRATEGIES:
                attacks += SOME
            if only is not None:
                attacks = list(only)
            runs += [(dataset, strategy, attack) for attack in attacks]
    return runs


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per dataset and strategy, one column per attack (``–``: not run)."""
    attacks = ["none", *EVERYWHERE, *SOME]
    header = "| dataset | strategy | clean | " + " | ".join(attacks[1:]) + " |"
    lines = [header, "| --- | --- | " + " | ".join("---:" for _ in attacks) + " |"]
    cells = {(r["dataset"], r["strategy"], r["attack"]): r["accuracy"] for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for strategy in STRATEGIES:
            values = [cells.get((dataset, strategy, a)) for a in attacks]
            if all(v is None for v in values):
                continue
            text = ["–" if v is None else f"{v:.4f}" for v in values]
            lines.append(f"| {dataset} | {strategy} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run the plan, write JSON and Markdown, print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--datasets", default="digits,breast-cancer")
    parser.add_argument("--all", action="store_true", help="every attack against every strategy")
    parser.add_argument("--attacks", help="comma-separated: only these attacks (no clean run)")
    parser.add_argument("--strategies", help=f"comma-separated: only these of {', '.join(STRATEGIES)}")
    parser.add_argument("--scale", type=float, help="the [byzantine] scale (sign-flip 1, scaled 10)")
    parser.add_argument("--out", default="benchmarks/results/byzantine")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flonnx-byzantine-") as tmp:
        only = args.attacks.split(",") if args.attacks else None
        strategies = args.strategies.split(",") if args.strategies else None
        unknown = sorted(set(strategies or ()) - set(STRATEGIES))
        if unknown:
            parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        runs = plan(args.datasets.split(","), args.all, only, strategies)
        for i, (dataset, strategy, attack) in enumerate(runs):
            row = run_one(dataset, strategy, attack, clients=args.clients, rounds=args.rounds,
                          share=args.share, registry=Path(tmp) / f"r{i}", scale=args.scale)
            rows.append(row)
            print(f"{dataset:14} {strategy:14} {row['attack']:11} accuracy {row['accuracy']:.4f} "
                  f"({row['seconds']} s)", flush=True)
            doc = {"clients": args.clients, "share": args.share, "rounds": args.rounds,
                   "scale": args.scale, "runs": rows}
            out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    markdown = table(rows)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
