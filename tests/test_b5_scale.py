"""B5's report section (benchmarks/run.py) and its synthetic data (no timing asserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import b5_scale
from benchmarks.run import render_b5


def _run(side: str, clients: int, status: str, handshake: list[float], rounds_done: int) -> dict[str, Any]:
    return {"side": side, "clients": clients, "fraction_train": 0.1, "rounds": 5, "status": status,
            "rounds_done": rounds_done, "handshake_s": handshake, "first_round_s": 4.0,
            "median_round_s": 2.5 if rounds_done > 1 else float("nan"), "wall_s": 120.0,
            "peak_rss_bytes": 3 * 2**30, "peak_processes": 10, "final_accuracy": 0.8,
            "command": b5_scale.command("synthetic.csv", clients, 0.1, 5)}


def test_the_b5_section_lists_each_simulation_and_the_handshake_per_node() -> None:
    doc = {"command": "python -m benchmarks run --full --only B5", "mode": "full", "created": "now",
           "results": {"rows_per_client": 50, "features": 20, "classes": 4, "model": "mlp-20-16-4",
                       "fraction_train": 0.1, "notes": ["a note"],
                       "runs": [_run("flonnx", 1000, "ran", [100.0], 5), _run("flower", 1000, "ran", [], 5),
                                _run("flonnx", 10000, "stopped at the 300 s cap", [], 0),
                                {**_run("flonnx", 20000, "failed (exit 1)", [600.0], 0),
                                 "error": "Traceback ...\nFlonnxError: 9 of 20000 nodes | answered`\n\n"}]}}

    text = "\n".join(render_b5(doc))

    assert ("| flonnx | 1,000 | ran | 5 / 5 | 100.0 | 4.00 | 2.50 | not timed | 120 | 3,072 | 10 | 0.800 |"
            in text)
    assert "| flower | 1,000 | ran | 5 / 5 | - |" in text
    assert "| flonnx | 10,000 | stopped at the 300 s cap | 0 / 5 | not done | 4.00 | n/a |" in text
    # net of Flower's start-up of the same nodes (its first round 4.0 s minus its median round 2.5 s)
    assert ("handshake 100.0 s = 100 ms per node; Flower's start-up of the same 1,000 nodes (its "
            "first round minus its median round) is 2 s, so the handshake's own cost is about 98 ms "
            "per node") in text
    assert "20,000 clients: handshake" not in text  # a failed run's handshake says nothing per node
    assert "- flonnx 20,000 clients failed: `FlonnxError: 9 of 20000 nodes / answered'`" in text
    assert "`flonnx simulate --data synthetic.csv --label y --clients 1000 --fraction-train 0.1" in text


def test_the_synthetic_data_is_seeded(tmp_path: Path) -> None:
    a = b5_scale.make_data(tmp_path / "a.csv", 3).read_text()
    b = b5_scale.make_data(tmp_path / "b.csv", 3).read_text()

    assert a == b
    assert a.splitlines()[0].endswith(",x19,y") and len(a.splitlines()) == 1 + 3 * 50
