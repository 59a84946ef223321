"""One entry point: ``python -m benchmarks run --quick|--full [--only B3,B1]`` (or ``benchmarks/run.py``).

Writes ``benchmarks/results/<bench>.json`` for each benchmark run, then regenerates
``docs/benchmarks.md`` from every JSON result present (``python -m benchmarks docs`` only
regenerates). ``make bench-quick`` / ``make bench`` call this.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, ROOT, machine, write_result  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
NAMES = {"B3": "b3_exchange", "B1": "b1_round", "B1-INPROCESS": "b1_inprocess", "B2": "b2_memory",
         "B4": "b4_storage", "B5": "b5_scale", "B6": "b6_interpreter"}


def _b3(quick: bool) -> dict[str, Any]:
    from benchmarks import b3_exchange

    return b3_exchange.run(quick)


def _b1(quick: bool) -> dict[str, Any]:
    from benchmarks import b1_round

    return b1_round.run(quick)


def _b1_inprocess(quick: bool) -> dict[str, Any]:
    from benchmarks import b1_inprocess

    return b1_inprocess.run(quick)


def _b2(quick: bool) -> dict[str, Any]:
    from benchmarks import b2_memory, b2_round

    data = b2_memory.run(quick)
    data["end_to_end"] = b2_round.run(quick)  # one simulation per side: about 3 min
    return data


def _b5(quick: bool) -> dict[str, Any]:
    from benchmarks import b5_scale

    return b5_scale.run(quick)


def _b4(quick: bool) -> dict[str, Any]:
    from benchmarks import b4_storage

    return b4_storage.run(quick)


def _b6(quick: bool) -> dict[str, Any]:
    from benchmarks import interpreter_speed

    return interpreter_speed.run(quick)


RUNNERS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "B3": _b3, "B1": _b1, "B1-INPROCESS": _b1_inprocess, "B2": _b2, "B4": _b4, "B5": _b5, "B6": _b6}


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
    """B1's section of the report: per model, times, bytes, ratios and flonnx's round breakdown."""
    res = doc["results"]
    models = [m for m in res.get("models", [res])  # before B1 had several models: one
              if "error" not in m]
    failed = [m for m in res.get("models", []) if "error" in m]
    out = ["## B1 round overhead", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}). Round time = wall time "
           "between consecutive central evaluations (server side, in the simulation's process); "
           "first round reported apart. Shared 2-core machine (other jobs may run); medians over "
           "rounds of the simulations of each side (see notes). Targets: time ≤ 1.05×, bytes "
           "≤ 1.02×.", "",
           "| model | side | first round s | median round s (rounds 2..) | bytes sent / round | "
           "bytes received / round | final accuracy |", "|---|---|---|---|---|---|---|"]
    for m in models:
        name = m.get("model", "digits-mlp")
        for side in ("flonnx", "flower"):
            s = m[side]
            out.append(f"| {name} | {side} | {_fmt(s['first_round_s'])} | {_fmt(s['median_round_s'])} | "
                       f"{s['bytes_sent_per_round']:,.0f} | {s['bytes_received_per_round']:,.0f} | "
                       f"{_fmt(s.get('final_accuracy', float('nan')), 3)} |")
    out += ["", "| model | setting | time ratio | bytes sent ratio | bytes received ratio |",
            "|---|---|---|---|---|"]
    for m in models:
        r = m["ratios"]
        out.append(f"| {m.get('model', 'digits-mlp')} | {m['description']} | **{_fmt(r['time'])}×** | "
                   f"**{_fmt(r['bytes_sent'], 3)}×** | **{_fmt(r['bytes_received'], 3)}×** |")
    out += [f"| {m['model']} | failed: {m['error']} | | | |" for m in failed]
    out += _b1_breakdown(models)
    out += ["", "Train-message bytes per round by record (serialized record; array data alone in "
            "parentheses):", "", "| model | side | direction | record | bytes / round |",
            "|---|---|---|---|---|"]
    for m in models:
        for side in ("flonnx", "flower"):
            by = m[side]["bytes_by_type"]
            for direction in ("sent", "received"):
                key = f"{direction} train"
                data = by.get("array_data", {}).get(key, 0) / m["rounds"]
                for name, size in sorted(by.get("records", {}).get(key, {}).items()):
                    extra = f" ({data:,.0f})" if name == "arrays" else ""
                    out.append(f"| {m.get('model', 'digits-mlp')} | {side} | {direction} | `{name}` | "
                               f"{size / m['rounds']:,.0f}{extra} |")
    for m in models:
        by = m["flonnx"]["bytes_by_type"]
        others = {k: v for k, v in by["sent"].items() if k != "train"}
        if others:
            out += ["", f"{m.get('model', 'digits-mlp')}: flonnx's other messages over the whole run "
                    "(not in the per-round figures), sent / received bytes: " + ", ".join(
                        f"{k} {v:,} / {by['received'].get(k, 0):,}" for k, v in others.items()) + "."]
    out += ["", "Caveat: Flower's in-memory grid polls for replies every 0.1 s (`pull_interval`), so "
            "sub-second rounds come in steps of about 0.1 s on both sides; the digits MLP's "
            "~0.3-0.5 s rounds cannot resolve a 5 % difference, the longer rounds of the other "
            "models can.", ""]
    if res.get("notes"):
        out += [f"- {n}" for n in res["notes"]] + [""]
    return out


def _b1_breakdown(models: list[dict[str, Any]]) -> list[str]:
    """Median seconds per round of flonnx's server-side steps (rounds 2..), per model."""
    timed = [m for m in models if m["flonnx"].get("breakdown_s")]
    if not timed:
        return []
    names = sorted({k for m in timed for k in m["flonnx"]["breakdown_s"]})
    out = ["", "Where flonnx's round goes (server side, median seconds per round over rounds 2..; "
           "`check replies` includes its hashing and validation; the wait for the nodes includes "
           "their training and the transport, which plain Flower has too). Extra = flonnx's median "
           "round - Flower's.", "",
           "| step | " + " | ".join(m["model"] for m in timed) + " |", "|---|" + "---|" * len(timed)]
    for name in names:
        out.append(f"| {name} | " + " | ".join(
            f"{m['flonnx']['breakdown_s'].get(name, 0.0):.4f}" for m in timed) + " |")
    out.append("| round (flonnx) | " + " | ".join(f"{m['flonnx']['median_round_s']:.4f}" for m in timed)
               + " |")
    out.append("| extra vs Flower | " + " | ".join(
        f"{m['flonnx']['median_round_s'] - m['flower']['median_round_s']:+.4f}" for m in timed) + " |")
    return out


def render_b2(doc: dict[str, Any]) -> list[str]:
    """B2's section of the report."""
    res = doc["results"]
    out = ["## B2 server memory", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}). The aggregation step for "
           "N updates of a float32 MLP of P parameters (`benchmarks/b2_memory.py`), each case in its "
           "own process. Peak = `tracemalloc` peak of the step in model sizes, the updates it holds "
           "included (the global model is not counted); above one model = peak minus the update in "
           "flight that any server must hold to use it. Target: flonnx's extra memory "
           f"≤ {res['target_models']:g}× the model whatever N. RSS growth = growth of the process's "
           "peak RSS (its setup may have peaked higher: a lower bound). Time = aggregation work "
           "only, wall and CPU seconds (wall is inflated when other jobs share the cores). Held "
           f"cases beyond the budget ({res['budget_bytes'] / 2**30:.1f} GiB of "
           f"{res['available_bytes'] / 2**30:.1f} GiB available at the start) are not run: their "
           "updates do not fit.", "",
           "| P | N | method | peak (models) | above one model | RSS growth MB | seconds | CPU seconds |",
           "|---|---|---|---|---|---|---|---|"]
    for c in res["cases"]:
        if c["status"] == "ran":
            out.append(f"| {c['size']} | {c['clients']} | {c['method']} | {c['peak_in_models']:.2f} | "
                       f"{c['peak_in_models'] - 1:.2f} | {c['rss_growth_bytes'] / 1e6:,.0f} | "
                       f"{c['seconds']:.2f} | {_fmt(c.get('cpu_seconds', float('nan')))} |")
        else:
            out.append(f"| {c['size']} | {c['clients']} | {c['method']} | "
                       f"{c['status']}: {c.get('reason') or c.get('error', '')} | | | | |")
    out += ["", "fixed-point-v1 = flonnx's streaming aggregator (FedAvg, FedProx, FedAvgM, FedAdagrad, "
            "FedAdam, FedYogi): one int64 accumulator (2× a float32 model) + 512 KiB of buffers + the "
            "update being folded, whatever N. flower-fedavg-held = Flower's `FedAvg.aggregate_train` "
            "over N reply messages held at once; float-v0-held = flonnx's held path (FedMedian, "
            "FedTrimmedAvg, Krum, MultiKrum, Bulyan, QFedAvg, the DP wrappers and custom strategies, "
            "which cannot stream).", ""]
    if "end_to_end" in res:
        out += _b2_end_to_end(res["end_to_end"], doc)
    return out


def _b2_end_to_end(e2e: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """B2's second table: the server process's memory in real rounds at N = 100."""
    model = e2e["model_bytes"]
    out = [f"End-to-end rounds at N = {e2e['clients']} (`benchmarks/b2_round.py`). Command: "
           f"`{e2e.get('command', doc['command'])}` ({e2e.get('mode', doc['mode'])}, "
           f"{e2e.get('created', doc['created'])}). One Flower Simulation Engine run per side, each in "
           f"its own process: {e2e['clients']} clients, all sampled in each of {e2e['rounds']} rounds, "
           f"model `{e2e['model']}` ({e2e['parameters']:,} float32 parameters, "
           f"{model / 1e6:.1f} MB; {e2e['clients']} held updates = "
           f"{e2e['clients'] * model / 1e6:,.0f} MB), {e2e['local_epochs']} local epoch, FedAvg "
           "(flonnx: streamed, each reply folded as it is pulled; Flower: `FedAvg` over the N replies "
           "`send_and_receive` returns), synthetic data of B5. The ServerApp runs in the driver "
           "process (Ray's workers train in others): its own RSS is sampled every "
           f"{1000 * e2e['sampling_interval_s']:g} ms; a round = central evaluation to central "
           "evaluation; peak above start = the highest RSS in the round minus the RSS at its start "
           "(models = ÷ the model's bytes); anonymous RSS leaves out file-backed and shared pages "
           "(libraries loaded on first use, mapped shared memory). `tracemalloc` traces round 1 only "
           "(Python heap, numpy included; it slows that round); round 2 is untraced, and its start "
           "already holds what round 1 left, so round 1 is the headline. Tree peak = summed RSS of the "
           "whole simulation (driver, Ray, workers), every 0.5 s. Times measured on a shared 2-core "
           "machine (other jobs may run); memory depends little on the load.", "",
           "| side | round | round s | RSS at start MiB | peak RSS above start MiB (models) "
           "| peak anonymous RSS above start MiB (models) | RSS at end MiB | tracemalloc peak MiB "
           "(models) / at the round's end MiB | tree peak RSS MiB | status |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in e2e["runs"]:
        if not r["rounds"]:
            out.append(f"| {r['side']} | - | | | | | | | {r['tree_peak_rss_bytes'] / 2**20:,.0f} | "
                       f"{r['status']} |")
        for x in r["rounds"]:
            traced = (f"{x['tracemalloc_peak_bytes'] / 2**20:,.0f} "
                      f"({x['tracemalloc_peak_bytes'] / model:.1f}) / "
                      f"{x['tracemalloc_end_bytes'] / 2**20:,.0f}" if x["traced"] else "not traced")
            out.append(f"| {r['side']} | {x['round']} | {x['seconds']:.1f} | "
                       f"{x['rss_before_bytes'] / 2**20:,.0f} | "
                       f"**{x['peak_rss_above_bytes'] / 2**20:,.0f}** "
                       f"({x['peak_rss_above_bytes'] / model:.1f}) | "
                       f"{x['peak_anon_above_bytes'] / 2**20:,.0f} "
                       f"({x['peak_anon_above_bytes'] / model:.1f}) | "
                       f"{x['rss_after_bytes'] / 2**20:,.0f} | {traced} | "
                       f"{r['tree_peak_rss_bytes'] / 2**20:,.0f} | {r['status']} |")
    out += ["", "Flower's `Strategy.start` keeps a round's reply list (`train_replies`) through its "
            "central evaluation and until the next round's `send_and_receive` returns, so from round "
            "2 on its server holds up to 2 × N updates (tracemalloc at round 1's end; RSS at the end "
            "of round 2). flonnx's round peak covers all its server does in the round (outgoing "
            "messages, replies checked and folded, the registry write, the evaluation), not only "
            "the aggregator of the table above. Time: Flower's round 1 includes starting the node "
            "actors, which flonnx's handshake did before its round 1 (as in B1); compare round 2.", "",
            f"Equivalent CLI of the flonnx side: `{e2e['flonnx_command']}`, with a spec setting "
            f"`{e2e.get('spec_keys', '')}`.", ""]
    if e2e.get("notes"):
        out += [f"- {n}" for n in e2e["notes"]] + [""]
    return out


def render_b5(doc: dict[str, Any]) -> list[str]:
    """B5's section of the report: one row per simulation (ran, stopped at its cap, or failed)."""
    res = doc["results"]
    out = ["## B5 scale", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}). Synthetic data "
           f"(`benchmarks.b5_scale.make_data`, seed 0): {res['rows_per_client']} rows per client, "
           f"{res['features']} features, {res['classes']} classes (Gaussian mixture), iid partitions, "
           f"20 % hold-out; model `{res['model']}`, torch nodes, FedAvg, "
           f"{100 * res['fraction_train']:g} % of the nodes sampled per round. Each simulation in its "
           "own process; round time = wall time between central evaluations (first round apart); "
           "peak RSS = summed RSS of the simulation's process tree (driver, Ray GCS, raylet, "
           "workers) sampled every 0.5 s. Handshake = flonnx's `Federation._handshake`, which asks "
           "every node (not only the sampled share); site evaluation = its final evaluation of the "
           "last version at every node (`evaluate-sites`, which the baseline does not do). Shared "
           "2-core machine.", "",
           "| side | clients | status | rounds done | handshake s | first round s | "
           "median round s (rounds 2..) | site evaluation s | wall s | peak RSS MiB | processes at peak | "
           "final accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        hs = (" + ".join(f"{h:.1f}" for h in r["handshake_s"])
              or ("-" if r["side"] == "flower" else "not done"))
        out.append(f"| {r['side']} | {r['clients']:,} | {r['status']} | {r['rounds_done']} / {r['rounds']} | "
                   f"{hs} | {_fmt(r['first_round_s'])} | {_fmt(r['median_round_s'])} | "
                   f"{_b5_sites(r)} | "
                   f"{r['wall_s']:.0f} | {r['peak_rss_bytes'] / 2**20:,.0f} | {r['peak_processes']} | "
                   f"{_fmt(r['final_accuracy'], 3)} |")
    out += ["", "Equivalent CLI of each flonnx row: " + "; ".join(
        f"`{r['command']}`" for r in res["runs"] if r["side"] == "flonnx") + "."]
    out += _b5_handshake(res["runs"])
    failures = [f"- {r['side']} {r['clients']:,} clients failed: `{_last_line(r['error'])}`"
                for r in res["runs"] if r.get("error")]
    out += [""] + failures if failures else []
    if res.get("notes"):
        out += [""] + [f"- {n}" for n in res["notes"]]
    return out + [""]


def _last_line(text: str) -> str:
    """The last non-empty line of a child's error output, safe inside a Markdown code span."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[-1] if lines else "").replace("`", "'").replace("|", "/")[:300]


def _b5_sites(run: dict[str, Any]) -> str:
    if run["side"] != "flonnx":
        return "-"
    if "sites_s" not in run:
        return "not timed"
    return " + ".join(f"{x:.1f}" for x in run["sites_s"]) or "not done"


def _b5_handshake(runs: list[dict[str, Any]]) -> list[str]:
    """The handshake per flonnx node (it asks every node), net of the start-up Flower pays too.

    The handshake is the run's first contact with every virtual node, so it includes the Simulation
    Engine's start-up of the nodes, which Flower's baseline pays in its first round instead (its
    first round minus a later one, where the same client count ran on Flower's side).
    """
    out = []
    for r in (r for r in runs if r["side"] == "flonnx" and r["handshake_s"] and r["status"] == "ran"):
        total = sum(r["handshake_s"])
        line = (f"- flonnx {r['clients']:,} clients: handshake {total:.1f} s = "
                f"{1000 * total / r['clients']:.0f} ms per node")
        flower = next((f for f in runs if f["side"] == "flower" and f["clients"] == r["clients"]
                       and f.get("rounds_done", 0) >= 2), None)
        if flower is not None:
            start_up = flower["first_round_s"] - flower["median_round_s"]
            line += (f"; Flower's start-up of the same {r['clients']:,} nodes (its first round minus its "
                     f"median round) is {start_up:.0f} s, so the handshake's own cost is about "
                     f"{1000 * (total - start_up) / r['clients']:.0f} ms per node")
        out.append(line + (f" (a round, sampling {100 * r['fraction_train']:g} %, sends to "
                           f"{round(r['fraction_train'] * r['clients']):,} of them)."))
    return [""] + out if out else []


def render_b6(doc: dict[str, Any]) -> list[str]:
    """B6's section of the report: ms per training step, native torch vs the interpreter."""
    res = doc["results"]
    versions = ", ".join(f"{k} {v}" for k, v in res.get("versions", {}).items())
    out = ["## B6 interpreter", "",
           f"Command: `{doc['command']}` ({doc['mode']}, {doc['created']}); standalone: `python "
           "benchmarks/interpreter_speed.py`. One training step = forward + backward + Adam update, "
           f"batch {res['batch']}; native = the `nn.Module`; torch interpreter = flonnx's interpreter "
           "(`flonnx.exchange.interpreter.Program`, torch backend, training mode) running the ONNX "
           "export of the same module; JAX = the same program on the jax backend, `jax.grad` + "
           f"`optax.adam`, jitted. Median over {res['repeats']} repeats of the mean of "
           f"{res['steps']} steps (the runners take turns in each repeat), torch with "
           f"{res['threads']} thread ({versions}). Target: torch interpreter "
           f"≤ {res['target_ratio']:g}× native. Times measured on a shared 2-core machine (other "
           "jobs may run: wall times are inflated by the load; CPU = the process's CPU time per step, "
           "all its threads, less sensitive to it; the load average at the start is in the JSON).", "",
           "| model | parameters | native torch ms / step | torch interpreter ms / step | ratio "
           "| CPU ms / step, native / interpreter (ratio) | JAX jit interpreter ms / step | JAX ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for m in res["models"]:
        jax, cpu = m["jax_jit_interpreter_ms"], m.get("cpu_ms")
        cpu_cell = (f"{cpu['native']:.3f} / {cpu['interp']:.3f} ({m['torch_cpu_ratio']:.2f}×)"
                    if cpu else "-")
        out.append(f"| {m['model']}: {m['description']} | {m['parameters']:,} | {m['native_ms']:.3f} | "
                   f"{m['torch_interpreter_ms']:.3f} | **{m['torch_ratio']:.2f}×** | {cpu_cell} | "
                   + (f"{jax:.3f} | {m['jax_ratio']:.2f}× |" if jax is not None else "not installed | |"))
    return out + [""]


def _render_b1_inprocess(doc: dict[str, Any]) -> list[str]:
    from benchmarks import b1_inprocess

    return b1_inprocess.render(doc)


def _render_b4(doc: dict[str, Any]) -> list[str]:
    from benchmarks import b4_storage

    return b4_storage.render(doc)


RENDER = {"b3_exchange": render_b3, "b1_round": render_b1, "b1_inprocess": _render_b1_inprocess,
          "b2_memory": render_b2, "b4_storage": _render_b4, "b5_scale": render_b5,
          "b6_interpreter": render_b6}


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
             "- `make bench-quick` = `python -m benchmarks run --quick` (561 s from a fresh clone here, "
             "set-up included)",
             "- `make bench` = `python -m benchmarks run --full`",
             "- one benchmark: `python -m benchmarks run --quick --only B3`", ""]
    for name, doc in docs.items():
        lines += RENDER[name](doc)
    lines += ["## Targets not met", "", "Computed from the results above (`benchmarks/run.py`, `unmet`):", ""]
    lines += [f"- {line}" for line in unmet(docs)] or ["- none"]
    lines.append("")
    return "\n".join(lines)


def unmet(docs: dict[str, dict[str, Any]]) -> list[str]:
    """Each target of issue #10 the results miss, with the figure and where the doc explains it."""
    out = []
    for m in docs.get("b1_round", {}).get("results", {}).get("models", []):
        r = m.get("ratios")
        if r is None:
            continue
        if r["time"] > 1.05:
            out.append(f"B1 round time, {m['model']}: {r['time']:.2f}x on the Simulation Engine (target "
                       "1.05x); the in-process table shows where the extra time goes")
        if max(r["bytes_sent"], r["bytes_received"]) > 1.02:
            out.append(f"B1 bytes, {m['model']}: {r['bytes_sent']:.3f}x sent, {r['bytes_received']:.3f}x "
                       "received (target 1.02x): each message's lineage record and round config, on a "
                       "small model")
    for size in docs.get("b3_exchange", {}).get("results", {}).get("sizes", []):
        for op in ("weights_id", "check"):
            pct = size["ops"][op]["pct_of_raw"]
            if pct < 80:
                out.append(f"B3 `{op}` at {size['size']}: {pct:.0f} % of raw SHA-256 (target 80 %)")
    for c in docs.get("b2_memory", {}).get("results", {}).get("cases", []):
        if c.get("method") == "fixed-point-v1" and c.get("status") == "ran" and c["peak_in_models"] - 1 > 3:
            out.append(f"B2 {c['size']} N={c['clients']}: {c['peak_in_models'] - 1:.2f} models above one "
                       "(target 3)")
    runs = docs.get("b5_scale", {}).get("results", {}).get("runs", [])
    for r in runs:
        if r["side"] == "flonnx" and r["status"] != "ran":
            flower = next((f for f in runs if f["side"] == "flower" and f["clients"] == r["clients"]), None)
            out.append(f"B5 flonnx at {r['clients']:,} clients: {r['status']}"
                       + (f" where Flower's baseline {flower['status']} ({flower['wall_s']:.0f} s)"
                          if flower else "") + "; the B5 notes say why")
    for m in docs.get("b6_interpreter", {}).get("results", {}).get("models", []):
        if m["torch_ratio"] > m.get("target_ratio", 1.25):
            out.append(f"B6 {m['model']}: torch interpreter {m['torch_ratio']:.2f}x native (target 1.25x)")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, write their JSON, regenerate the doc; print every ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("action", choices=["run", "docs"], nargs="?", default="run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 10 minutes (the default)")
    mode.add_argument("--full", action="store_true", help="more repeats and rounds")
    parser.add_argument("--only", default="",
                        help="comma-separated: B3,B1,B1-INPROCESS,B2,B4,B5,B6 (default: all)")
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
            if bench == "B2":
                _keep_end_to_end(data, args.results / f"{NAMES[bench]}.json", command, quick)
            path = write_result(NAMES[bench], "quick" if quick else "full", data, command, args.results)
            print(f"{bench}: wrote {path}")
            _print_ratios(bench, data)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(render(args.results))
    print(f"wrote {args.doc}")
    return 0


def _keep_end_to_end(data: dict[str, Any], previous: Path, command: str, quick: bool) -> None:
    """Stamp B2's end-to-end part with its command, or keep the last one if this run had none."""
    if "end_to_end" in data:
        data["end_to_end"].update(command=command, mode="quick" if quick else "full",
                                  created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    elif previous.exists():
        kept = json.loads(previous.read_text())["results"].get("end_to_end")
        if kept is not None:
            data["end_to_end"] = kept


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
    elif bench == "B2":
        for c in data["cases"]:
            if c["status"] == "ran":
                print(f"  B2 {c['size']} N={c['clients']} {c['method']}: peak {c['peak_in_models']:.2f} "
                      f"models, {c['seconds']:.2f} s ({c.get('cpu_seconds', float('nan')):.2f} s CPU)")
            else:
                print(f"  B2 {c['size']} N={c['clients']} {c['method']}: {c['status']} "
                      f"({c.get('reason') or c.get('error', '')})")
        for r in data.get("end_to_end", {}).get("runs", []):
            for x in r["rounds"]:
                print(f"  B2 end-to-end {r['side']} round {x['round']}: server RSS peak above start "
                      f"{x['peak_rss_above_bytes'] / 2**20:,.0f} MiB, {x['seconds']:.1f} s")
    elif bench == "B1":
        for m in data.get("models", [data]):
            if "error" in m:
                print(f"  B1 {m['model']} failed: {m['error']}")
                continue
            r = m["ratios"]
            print(f"  B1 {m.get('model', 'digits-mlp')} flonnx/Flower: time {r['time']:.2f}x (target "
                  f"<= 1.05), bytes sent {r['bytes_sent']:.3f}x, received {r['bytes_received']:.3f}x "
                  "(target <= 1.02)")
    elif bench == "B1-INPROCESS":
        for m in data["models"]:
            if "error" in m:
                print(f"  B1 in one process {m['model']} failed: {m['error']}")
                continue
            print(f"  B1 in one process {m['model']} flonnx/Flower: CPU per round {m['ratio']:.2f}x; extra "
                  f"{m['extra_s']['node']:+.3f} s at the nodes, {m['extra_s']['coordinator']:+.3f} s at "
                  "the coordinator")
    elif bench == "B4":
        for c in data["configurations"]:
            for v in c["variants"]:
                print(f"  B4 {c['model']} N={c['clients']} retention {v['retention']} compress "
                      f"{'on' if v['compress'] else 'off'}: {v['bytes_per_round']:,} bytes a round, "
                      f"{100 * v['saved_share']:.0f} % saved; same final version: "
                      f"{'yes' if c['same_final_version'] else 'NO'}")
    elif bench == "B6":
        for m in data["models"]:
            print(f"  B6 {m['model']}: torch interpreter / native {m['torch_ratio']:.2f}x "
                  f"(target <= {data['target_ratio']:g})")


if __name__ == "__main__":
    raise SystemExit(main())
