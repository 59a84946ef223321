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
