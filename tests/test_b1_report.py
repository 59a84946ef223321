"""B1's report section shows every model's ratios and flonnx's round breakdown (no timing asserted)."""

from __future__ import annotations

from typing import Any

from benchmarks.b1_round import Timers
from benchmarks.run import render_b1


def _side(round_s: float, sent: float, breakdown: dict[str, float] | None = None) -> dict[str, Any]:
    side: dict[str, Any] = {"first_round_s": 2.0, "median_round_s": round_s, "bytes_sent_per_round": sent,
                            "bytes_received_per_round": sent, "final_accuracy": 0.9,
                            "bytes_by_type": {"sent": {"train": int(sent)}, "received": {"train": int(sent)},
                                              "array_data": {}, "records": {}}}
    if breakdown is not None:
        side["breakdown_s"] = breakdown
    return side


def test_the_b1_section_lists_each_model_its_ratios_a_failure_and_the_breakdown() -> None:
    models = [{"model": name, "description": f"{name} setting", "rounds": 4,
               "flonnx": _side(1.1, 102.0, {"check replies: hashing": 0.0125}),
               "flower": _side(1.0, 100.0),
               "ratios": {"time": 1.1, "bytes_sent": 1.02, "bytes_received": 1.02, "first_round": 1.0}}
              for name in ("digits-mlp", "digits-cnn")]
    doc = {"command": "pytest", "mode": "quick", "created": "now",
           "results": {"models": [*models, {"model": "mlp-64-3100-3100-10", "error": "MemoryError: x"}]}}

    text = "\n".join(render_b1(doc))

    assert "| digits-cnn | digits-cnn setting | **1.10×** | **1.020×** | **1.020×** |" in text
    assert "| mlp-64-3100-3100-10 | failed: MemoryError: x |" in text
    assert "| check replies: hashing | 0.0125 | 0.0125 |" in text
    assert "| extra vs Flower | +0.1000 | +0.1000 |" in text


def test_timers_count_each_call_in_the_round_it_started_in() -> None:
    timers = Timers()
    timers.calls = [("hash", 1.5, 0.25), ("hash", 1.7, 0.25), ("hash", 2.5, 1.0), ("write", 0.5, 9.0)]

    per_round = timers.per_round([0.0, 1.0, 2.0, 3.0])  # rounds 2.. start at the second mark

    assert per_round == {"hash": 0.75, "write": 0.0}


def test_in_process_rounds_are_cpu_seconds_between_marks_and_calls_count_where_they_start() -> None:
    from benchmarks.b1_inprocess import CpuTimers, _per_round

    timers = CpuTimers()
    timers.calls = [("node", 1.5, 0.25), ("node", 2.5, 0.5), ("node", 2.7, 0.125), ("node", 0.5, 9.0)]
    # (wall, cpu) marks: round 1 from 0.0 to 1.0 (skipped: it pays imports), then two rounds
    marks = [(0.0, 10.0), (1.0, 11.0), (2.0, 11.75), (3.0, 12.5)]

    rounds = _per_round(timers, marks)

    assert rounds == [{"round": 0.75, "node": 0.25}, {"round": 0.75, "node": 0.625}]


def test_the_in_process_section_splits_the_round_and_names_a_failure() -> None:
    from benchmarks.b1_inprocess import render

    ours = {"round": 1.2, "node": 1.0, "coordinator": 0.2, "node: training epochs": 0.8,
            "node: parity check": 0.05, "coordinator: evaluation": 0.1, "check replies": 0.02,
            "registry: commit": 0.03, "registry: put_weights": 0.01}
    theirs = {"round": 1.0, "node": 0.9, "coordinator": 0.1}
    doc = {"command": "pytest", "mode": "quick", "created": "now", "results": {"clients": 6, "models": [
        {"model": "digits-mlp", "flonnx": ours, "flower": theirs, "ratio": 1.2,
         "extra_s": {"node": 0.1, "coordinator": 0.1}},
        {"model": "digits-cnn", "error": "RuntimeError: x"}]}}

    text = "\n".join(render(doc))

    assert ("| digits-mlp | flonnx | 1.200 | 1.000 | 0.800 | 0.050 | 0.200 | 0.100 | 0.020 | 0.040 "
            "| 1.20x |") in text
    assert "| digits-mlp | flower | 1.000 | 0.900 | | | 0.100 |" in text
    assert "| digits-cnn | error: RuntimeError: x |" in text
    assert "digits-mlp: nodes +0.100, coordinator +0.100" in text


def test_the_benchmark_doc_has_a_section_for_every_result_file() -> None:
    from benchmarks.common import RESULTS
    from benchmarks.run import NAMES, RENDER, render

    assert set(NAMES.values()) == set(RENDER)  # every benchmark the runner writes is rendered
    text = render(RESULTS)
    for heading in ("## B1 round overhead", "### B1 without Ray", "## B2 server memory", "## B3 exchange",
                    "## B4 storage", "## B5 scale", "## B6 interpreter"):
        assert heading in text


def test_unmet_lists_each_missed_target_with_its_figure_and_nothing_that_is_met() -> None:
    from benchmarks.run import unmet

    def b1(time: float, sent: float) -> dict[str, Any]:
        return {"model": f"m{time}", "ratios": {"time": time, "bytes_sent": sent, "bytes_received": 1.0}}

    docs = {
        "b1_round": {"results": {"models": [b1(1.05, 1.02), b1(1.5, 1.03), {"model": "x", "error": "e"}]}},
        "b3_exchange": {"results": {"sizes": [{"size": "10M", "ops": {"weights_id": {"pct_of_raw": 80.0},
                                                                       "check": {"pct_of_raw": 79.4}}}]}},
        "b2_memory": {"results": {"cases": [
            {"method": "fixed-point-v1", "status": "ran", "peak_in_models": 4.0, "size": "1M",
             "clients": 10},
            {"method": "fixed-point-v1", "status": "ran", "peak_in_models": 4.5, "size": "1M",
             "clients": 500},
            {"method": "flower-fedavg-held", "status": "ran", "peak_in_models": 500.0, "size": "1M",
             "clients": 500}]}},
        "b5_scale": {"results": {"runs": [
            {"side": "flonnx", "clients": 1000, "status": "ran"},
            {"side": "flonnx", "clients": 10000, "status": "failed (exit 1)"},
            {"side": "flower", "clients": 10000, "status": "ran", "wall_s": 449.3}]}},
        "b6_interpreter": {"results": {"models": [{"model": "mlp", "torch_ratio": 1.25},
                                                  {"model": "cnn", "torch_ratio": 1.27}]}},
    }

    assert unmet(docs) == [
        "B1 round time, m1.5: 1.50x on the Simulation Engine (target 1.05x); the in-process table shows "
        "where the extra time goes",
        "B1 bytes, m1.5: 1.030x sent, 1.000x received (target 1.02x): each message's lineage record and "
        "round config, on a small model",
        "B3 `check` at 10M: 79 % of raw SHA-256 (target 80 %)",
        "B2 1M N=500: 3.50 models above one (target 3)",
        "B5 flonnx at 10,000 clients: failed (exit 1) where Flower's baseline ran (449 s); the B5 notes "
        "say why",
        "B6 cnn: torch interpreter 1.27x native (target 1.25x)",
    ]
    assert unmet({}) == []
