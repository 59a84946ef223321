"""One entry point: ``python -m benchmarks run --quick|--full [--only B3,B1]`` (or ``benchmarks/run.py``).

Writes ``benchmarks/results/<bench>.json`` for each benchmark run, then regenerates
``docs/benchmarks.md`` from every JSON result present (``python -m benchmarks docs`` only
regenerates). ``make bench-quick`` / ``make bench`` call this.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, ROOT, machine, write_result  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
NAMES = {"B3": "b3_exchange", "B1": "b1_round"}


def _b3(quick: bool) -> dict[str, Any]:
    from benchmarks import b3_exchange

    return b3_exchange.run(quick)


def _b1(quick: bool) -> dict[str, Any]:
    from benchmarks import b1_round

    return b1_round.run(quick)


RUNNERS: dict[str, Callable[[bool], dict[str, Any]]] = {"B3": _b3, "B1": _b1}


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def render_b3(doc: dict[str, Any]) -> list[str]:
    """B3's section of the report."""
    res = doc["results"]
    out = ["## B3 exchange throughput", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}). Decoded float32 weights "
           "of a Gemm MLP (6 tensors); GB/s = 10^9 tensor bytes per second; % of raw = "
           "`hashlib.sha256` time / operation time (higher is better; target "
           f"≥ {res['target_pct_of_raw']:.0f} % for `weights_id` and `check`). Medians over "
           "repeats on a shared 2-core machine (other jobs may run).", ""]
    ops = ["raw_sha256", "weights_id", "encode_weights", "validate", "check",
           "flower_array_numpy", "flower_arrayrecord_from_numpy", "streamed_id_prototype"]
    out.append("| size | parameters | MB | repeats | " + " | ".join(f"{o} GB/s (% raw)" for o in ops) + " |")
    out.append("|" + "---|" * (4 + len(ops)))
    for size in res["sizes"]:
        cells = [f"{_fmt(size['ops'][o]['gb_per_s'])} ({size['ops'][o]['pct_of_raw']:.0f} %)" for o in ops]
        out.append(f"| {size['size']} | {size['parameters']:,} | {size['bytes'] / 1e6:.1f} | "
                   f"{size['repeats']} | " + " | ".join(cells) + " |")
    out += ["", "`check` = `Definition.validate` + `weights_id`, the array work of "
            "`server/replies.py`; `flower_*` is Flower's own encoding (reported apart); "
            "`weights_id` hashes tensor by tensor without building the encoding; "
            "`streamed_id_prototype` is the prototype it was made from (`benchmarks/b3_exchange.py`), "
            "kept as a cross-check of the digest.", ""]
    profiled = [s for s in res["sizes"] if "profile" in s]
    if profiled:
        s = profiled[-1]
        out += [f"cProfile of one `weights_id` call at {s['size']} (top functions by own time):", ""]
        out += ["| function | calls | own s | share |", "|---|---|---|---|"]
        for row in s["profile"]["weights_id"][:5]:
            out.append(f"| `{row['function']}` | {row['calls']} | {row['tottime_s']:.4f} | "
                       f"{100 * row['share_of_total']:.0f} % |")
        out.append("")
    hc = res.get("hash_count")
    if hc:
        out += [f"Hashes of each client update's full bytes in one in-process round ({hc['clients']} "
                f"torch clients, {hc['rounds']} round; target 1 per side): client side "
                f"**{hc['hashes_per_update_client_side']:g}**, server side "
                f"**{hc['hashes_per_update_server_side']:g}**.", "",
                "| side: caller > hashing helper | calls (all updates) |", "|---|---|"]
        out += [f"| `{k}` | {v} |" for k, v in hc["callers"].items()]
        out.append("")
    return out


def render_b1(doc: dict[str, Any]) -> list[str]:
    """B1's section of the report."""
    res = doc["results"]
    out = ["## B1 round overhead", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}). {res['description']} "
           "Round time = wall time between consecutive central evaluations (server side, in the "
           "simulation's process); first round reported apart. Shared 2-core machine (other jobs "
           "may run); medians over rounds of several simulations (see notes).", "",
           "| side | first round s | median round s (rounds 2..) | bytes sent / round | "
           "bytes received / round | final accuracy |", "|---|---|---|---|---|---|"]
    for side in ("flonnx", "flower"):
        s = res[side]
        out.append(f"| {side} | {_fmt(s['first_round_s'])} | {_fmt(s['median_round_s'])} | "
                   f"{s['bytes_sent_per_round']:,.0f} | {s['bytes_received_per_round']:,.0f} | "
                   f"{_fmt(s.get('final_accuracy', float('nan')), 3)} |")
    r = res["ratios"]
    out += ["", f"Ratios flonnx / Flower: time **{_fmt(r['time'])}×** (target ≤ 1.05×), bytes "
            f"sent **{_fmt(r['bytes_sent'], 3)}×**, received **{_fmt(r['bytes_received'], 3)}×** "
            "(target ≤ 1.02×).", ""]
    out += ["Train-message bytes per round by record (serialized record; array data alone in "
            "parentheses):", "", "| side | direction | record | bytes / round |", "|---|---|---|---|"]
    for side in ("flonnx", "flower"):
        by = res[side]["bytes_by_type"]
        for direction in ("sent", "received"):
            key = f"{direction} train"
            data = by.get("array_data", {}).get(key, 0) / res["rounds"]
            for name, size in sorted(by.get("records", {}).get(key, {}).items()):
                extra = f" ({data:,.0f})" if name == "arrays" else ""
                out.append(f"| {side} | {direction} | `{name}` | {size / res['rounds']:,.0f}{extra} |")
    others = {k: v for k, v in res["flonnx"]["bytes_by_type"]["sent"].items() if k != "train"}
    if others:
        out += ["", "flonnx's other messages over the whole run (not in the per-round figures), sent / "
                "received bytes: " + ", ".join(
                    f"{k} {v:,} / {res['flonnx']['bytes_by_type']['received'].get(k, 0):,}"
                    for k, v in others.items()) + "."]
    out += ["", "Caveat: Flower's in-memory grid polls for replies every 0.1 s (`pull_interval`), so "
            "sub-second rounds come in steps of about 0.1 s on both sides; with the digits MLP's "
            "~0.3-0.5 s rounds this cannot resolve a 5 % difference (the quick run has given 1.06× to "
            "1.9×). A model with longer rounds (digits CNN, ~10 M MLP; not yet run) is needed.", ""]
    if res.get("notes"):
        out += [f"- {n}" for n in res["notes"]] + [""]
    return out


RENDER = {"b3_exchange": render_b3, "b1_round": render_b1}


def render(folder: Path = RESULTS) -> str:
    """``docs/benchmarks.md`` from the JSON results in ``folder``."""
    docs = {}
    for name in RENDER:
        path = folder / f"{name}.json"
        if path.exists():
            docs[name] = json.loads(path.read_text())
    m = next(iter(docs.values()))["machine"] if docs else machine()
    lines = ["# Benchmarks", "",
             "Generated by `python -m benchmarks run` (do not edit: `make bench` / `make bench-quick` "
             "rewrite it from `benchmarks/results/*.json`). Issue #10.", "",
             "## Machine", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gib']} GiB; load average at the "
             f"start {m['load_average']}",
             f"- {m['note']}",
             f"- Python {m['python']} on {m['platform']}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()), "",
             "## Commands", "",
             "- `make bench-quick` = `python -m benchmarks run --quick` (a few minutes)",
             "- `make bench` = `python -m benchmarks run --full`",
             "- one benchmark: `python -m benchmarks run --quick --only B3`", ""]
    for name, doc in docs.items():
        lines += RENDER[name](doc)
    lines += ["## Not measured yet", "",
              "B1 for the digits CNN and a ~10 M-parameter MLP and the breakdown of flonnx's extra "
              "time; B2 server memory (streaming aggregation); B4 storage (retention, compression); "
              "B5 scale (1,000 clients); B6 (interpreter, `benchmarks/interpreter_speed.py`) is not "
              "yet folded into this report.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, write their JSON, regenerate the doc; print every ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("action", choices=["run", "docs"], nargs="?", default="run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few minutes (the default)")
    mode.add_argument("--full", action="store_true", help="more repeats and rounds")
    parser.add_argument("--only", default="", help="comma-separated: B3,B1 (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.action == "run":
        quick = not args.full
        chosen = [b.strip().upper() for b in args.only.split(",") if b.strip()] or list(RUNNERS)
        unknown = [b for b in chosen if b not in RUNNERS]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(RUNNERS)}")
        command = "python -m benchmarks " + " ".join(argv)
        for bench in chosen:
            data = RUNNERS[bench](quick)
            path = write_result(NAMES[bench], "quick" if quick else "full", data, command, args.results)
            print(f"{bench}: wrote {path}")
            _print_ratios(bench, data)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(args.results))
    print(f"wrote {args.doc}")
    return 0


def _print_ratios(bench: str, data: dict[str, Any]) -> None:
    if bench == "B3":
        for size in data["sizes"]:
            ops = size["ops"]
            print(f"  B3 {size['size']}: raw sha256 {ops['raw_sha256']['gb_per_s']:.2f} GB/s; "
                  f"weights_id {ops['weights_id']['pct_of_raw']:.0f} % of raw, check (validate + id) "
                  f"{ops['check']['pct_of_raw']:.0f} % (target >= 80 %); Flower Array.numpy "
                  f"{ops['flower_array_numpy']['gb_per_s']:.2f} GB/s; streamed-id prototype "
                  f"{ops['streamed_id_prototype']['pct_of_raw']:.0f} %")
        hc = data.get("hash_count")
        if hc:
            print(f"  B3 hashes per update: client {hc['hashes_per_update_client_side']:g}, "
                  f"server {hc['hashes_per_update_server_side']:g} (target 1 each)")
    elif bench == "B1":
        r = data["ratios"]
        print(f"  B1 flonnx/Flower: time {r['time']:.2f}x (target <= 1.05), bytes sent "
              f"{r['bytes_sent']:.3f}x, received {r['bytes_received']:.3f}x (target <= 1.02)")


if __name__ == "__main__":
    raise SystemExit(main())
