"""Compare every built-in strategy on one scenario in one simulation; print a Markdown table.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/compare_strategies.py [--scenario digits-mixed] [--rounds 5]
        [--seed 0] [--registry runs-compare]

All strategies run in one simulation (the engine starts once), each as its own registry run with the
same seed. "seconds" is the run's wall time from its registration to its last round (the engine's
start-up is excluded). Strategies that need parameters get the values in ``CONFIGS``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from flonnx.server.progress import ConsoleReporter, Reporter, RoundSummary
from flonnx.server.strategies import strategy_names

CONFIGS: dict[str, dict[str, str]] = {
    "fedavgm": {"server-momentum": "0.9"},
    "fedprox": {"proximal-mu": "0.1"},
    "dp-server-fixed": {"noise-multiplier": "0.01", "clipping-norm": "5.0"},
    "dp-client-fixed": {"noise-multiplier": "0.01", "clipping-norm": "5.0"},
    "dp-server-adaptive": {"noise-multiplier": "0.01", "initial-clipping-norm": "5.0"},
    "dp-client-adaptive": {"noise-multiplier": "0.01", "initial-clipping-norm": "5.0"},
}


@dataclass
class _Timing(Reporter):
    """Records each run's start, end and final metrics; forwards to the console."""

    console: ConsoleReporter = field(default_factory=ConsoleReporter)
    started: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, float, float, int, str]] = field(default_factory=list)

    def start(self, run_id: str, scenario: str, initial_version: str, metrics: dict[str, float]) -> None:
        """Note the start time."""
        self.started[run_id] = time.perf_counter()
        self.console.start(run_id, scenario, initial_version, metrics)

    def round(self, summary: RoundSummary) -> None:
        """Forward."""
        self.console.round(summary)

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """Note the end time and final accuracy."""
        seconds = time.perf_counter() - self.started[run_id]
        last = history[-1]
        rejected = sum(len(s.rejected) for s in history)
        self.rows.append((run_id, last.metrics.get("accuracy", float("nan")), seconds, rejected,
                          last.version_id))


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="digits-mixed", help="preset name or spec file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--registry", default="runs-compare")
    args = parser.parse_args()
    from flonnx.exchange.spec import load_spec
    from flonnx.simulations.runner import simulate

    names = strategy_names()
    scoped = [f"{n}.{k}={v}" for n in names for k, v in CONFIGS.get(n, {}).items()]
    reporter = _Timing()
    spec = load_spec(args.scenario, {"rounds": args.rounds, "seed": args.seed,
                                     "strategy": " ".join(names), "strategy-config": " ".join(scoped)})
    run_ids = simulate(spec, reporter=reporter, overrides={"registry": args.registry})
    by_run = {row[0]: row for row in reporter.rows}
    print(f"\n{args.scenario}, {args.rounds} rounds, seed {args.seed}\n")
    print("| strategy | config | final accuracy | seconds | rejected replies | final version |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name, run_id in zip(names, run_ids, strict=True):
        _, accuracy, seconds, rejected, version = by_run[run_id]
        config = " ".join(f"{k}={v}" for k, v in CONFIGS.get(name, {}).items()) or "defaults"
        print(f"| {name} | {config} | {accuracy:.4f} | {seconds:.1f} | {rejected} | {version[:12]} |")


if __name__ == "__main__":
    main()
