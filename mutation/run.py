"""Mutation testing of the modules that carry flonnx's promises, with cosmic-ray (issue #11).

``make mutation`` (or ``python -m mutation [--module exchange/hashing.py ...] [--timeout S]``):

1. clones the committed tree into ``build/mutation/src`` (cosmic-ray rewrites files in place, so it
   never touches the working tree) and links the clone's ``flonnx/`` package to its own folders, so
   the tests import the mutated clone and not the editable install;
2. for each module, runs cosmic-ray (``init``, ``baseline``, ``exec``) with the test files that guard
   that module (``pytest -x``: the first failure kills the mutant; a timeout counts as killed);
3. writes ``build/mutation/results.json`` (kill rate per module, and every survivor with its line,
   operator and diff) and prints the table ``docs/reliability.md`` quotes.

Not part of ``make test``: one module takes minutes to an hour on two cores.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"

#: module -> the test files that guard it (no Ray, no servers: each mutant runs them with ``-x``).
MODULES: dict[str, list[str]] = {
    "exchange/seeds.py": ["tests/exchange/test_seeds_and_sampling.py"],
    "server/sampling.py": ["tests/exchange/test_seeds_and_sampling.py"],
    "exchange/hashing.py": ["tests/exchange/test_hashing.py", "tests/hostile/test_limits.py"],
    "exchange/blobstore.py": ["tests/exchange/test_blobstore.py"],
    # test_check.py (the gate on real exports) and the resume of real strategies take 30 s a run
    "exchange/parity.py": ["tests/exchange/test_parity_mutants.py"],
    "exchange/lineage.py": ["tests/exchange/test_lineage.py", "tests/exchange/test_run_record.py"],
    "server/strategy_state.py": ["tests/server/test_strategy_state_mutants.py"],
    "server/replies.py": ["tests/server/test_replies_mutants.py"],
    # test_streaming.py runs federations and a torch export (25 s a run)
    "server/streaming.py": ["tests/server/test_streaming_mutants.py"],
    # test_streaming.py's comparisons with the held path need a torch export
    "server/aggregation.py": ["tests/server/test_aggregation_mutants.py"],
    "exchange/definition.py": ["tests/exchange/test_definition_mutants.py"],
    "exchange/registry.py": ["tests/exchange/test_registry_mutants.py"],
}

PACKAGES = ("exchange", "server", "client", "simulations")


def _prepare(source: Path) -> Path:
    """A fresh clone of the committed tree whose ``flonnx`` package links to the clone's folders.

    The clone's ``flonnx/`` gets symlinks ``exchange``, ``server``, ... to its own folders, and the
    clone goes first on ``PYTHONPATH``: ``flonnx.exchange`` then resolves to the mutated clone (in the
    test process and in any subprocess it starts), never to the editable install of the checkout.
    """
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    src = WORK / "src"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(source), str(src)], check=True)
    for package in PACKAGES:
        (src / "flonnx" / package).symlink_to(src / package)
    probe = subprocess.run([sys.executable, "-c", "import flonnx.exchange.hashing as m; print(m.__file__)"],
                           cwd=WORK, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True,
                           text=True, check=True)
    if not Path(probe.stdout.strip()).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"the clone does not shadow the installed flonnx: {probe.stdout.strip()}")
    return src


def _config(module: str, tests: list[str], timeout: float) -> str:
    # without the hypothesis and anyio plugins' start-up a fast guard file runs in a third of the
    # time (hypothesis's @given still works without its pytest plugin)
    command = shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                          "-p", "no:hypothesispytest", "-p", "no:anyio",
                          "-m", "not e2e and not deployment and not browser", *tests])
    return "\n".join([
        "[cosmic-ray]",
        f"module-path = {json.dumps(module)}",
        f"timeout = {timeout}",
        "excluded-modules = []",
        f"test-command = {json.dumps(command)}",
        "",
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
    ])


Span = tuple[int, int, int, int]


@functools.lru_cache(maxsize=4)  # one module's source, asked about each of its (up to 2,000) mutants
def _spans(source: str) -> tuple[list[Span], list[Span], list[Span]]:
    """Where annotations, parameter lists and default values are (line, col, end line, end col)."""
    tree = ast.parse(source)
    annotations, signatures, defaults = [], [], []

    def span(node: ast.AST) -> tuple[int, int, int, int]:
        return (node.lineno, node.col_offset, node.end_lineno or node.lineno,  # type: ignore[attr-defined]
                node.end_col_offset or 0)  # type: ignore[attr-defined]

    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(span(node.annotation))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.returns is not None:
                annotations.append(span(node.returns))
            body = node.body[0]
            signatures.append((node.lineno, node.col_offset, body.lineno, body.col_offset))
            defaults += [span(d) for d in [*node.args.defaults, *node.args.kw_defaults] if d is not None]
    return annotations, signatures, defaults


def _inside(pos: tuple[int, int], spans: list[Span]) -> bool:
    # cosmic-ray positions: 1-based line, 0-based column, like ast's
    return any((a, b) <= pos < (c, d) for a, b, c, d in spans)


def equivalent(source: str, operator: str, start: tuple[int, int]) -> str | None:
    """Why a surviving mutant cannot change behaviour, when that is decidable from where it sits.

    - inside an annotation: every module uses ``from __future__ import annotations``, so an
      annotation is never evaluated (``str | None`` mutated to ``str + None`` runs the same);
    - a binary-operator mutant inside a parameter list but outside every annotation and default: it
      rewrote the bare ``*`` of keyword-only parameters into ``/`` (every caller passes keywords).
    """
    annotations, signatures, defaults = _spans(source)
    if _inside(start, annotations):
        return "annotation (never evaluated)"
    if ("ReplaceBinaryOperator_Mul_" in operator and _inside(start, signatures)
            and not _inside(start, defaults)):
        return "keyword-only marker * (callers pass keywords)"
    return None


EARLIER = "killed in an earlier pass"


def _key(spec: Any) -> str:
    return f"{spec.operator_name}#{spec.occurrence}@{spec.start_pos[0]}:{spec.start_pos[1]}"


def _skip_known(session: Path, source: str, earlier: dict[str, Any] | None) -> tuple[int, int]:
    """Mark, before ``exec``, the mutants whose outcome is already known; returns (equivalent, earlier).

    Equivalent mutants (:func:`equivalent`) are never run. With ``earlier`` (a result of this module
    for the same source bytes), every mutant that pass killed is carried as killed: tests are only
    ever added between passes, so a killed mutant stays killed. Its survivors run again, and so do
    the mutants it did not reach if it was stopped early.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    again = None if earlier is None else {
        *(s["key"] for s in earlier["survivors"]), *earlier["pending_keys"]}
    skipped = carried = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            spec = item.mutations[0]
            why = equivalent(source, spec.operator_name, tuple(spec.start_pos))
            if why is not None:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                      output=f"equivalent: {why}"))
                skipped += 1
            elif again is not None and _key(spec) not in again:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=EARLIER,
                                                      test_outcome=TestOutcome.KILLED))
                carried += 1
    return skipped, carried


def wilson(killed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of a kill rate measured on ``total`` mutants drawn at random from a module's.

    cosmic-ray runs pending mutants in random order, so a pass stopped early measured a random
    sample; the interval ignores the finite population, so it is on the wide side.
    """
    if total == 0:
        return (0.0, 1.0)
    rate, z2 = killed / total, z * z
    centre = (rate + z2 / (2 * total)) / (1 + z2 / total)
    half = z * ((rate * (1 - rate) / total + z2 / (4 * total * total)) ** 0.5) / (1 + z2 / total)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def _results(session: Path, source: str) -> dict[str, object]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    killed = survived = incompetent = earlier = 0
    survivors, equivalents = [], []
    with use_db(str(session), WorkDB.Mode.open) as db:
        # a pass stopped early leaves these unrun (partial figures, over a random sample)
        pending = sorted(_key(item.mutations[0]) for item in db.pending_work_items)
        for item, result in db.completed_work_items:
            spec = item.mutations[0]
            found = {"line": spec.start_pos[0], "operator": spec.operator_name,
                     "occurrence": spec.occurrence, "key": _key(spec), "diff": result.diff}
            if (result.output or "").startswith("equivalent: "):
                equivalents.append({**found, "equivalent": result.output.removeprefix("equivalent: ")})
            elif result.test_outcome == TestOutcome.KILLED:
                killed += 1
                earlier += result.output == EARLIER
            elif result.test_outcome == TestOutcome.SURVIVED:
                why = equivalent(source, spec.operator_name, tuple(spec.start_pos))
                if why is None:
                    survived += 1
                    survivors.append(found)
                else:
                    equivalents.append({**found, "equivalent": why})
            else:
                incompetent += 1
    total = killed + survived
    return {"mutants": total, "killed": killed, "killed_earlier": earlier, "survived": survived,
            "pending": len(pending), "incompetent": incompetent, "equivalent": len(equivalents),
            "kill_rate": round(killed / total, 4) if total else None,
            **({"kill_rate_95": wilson(killed, total)} if pending else {}),
            "survivors": survivors, "equivalents": equivalents, "pending_keys": pending}


def _earlier(results: list[dict[str, Any]] | None, module: str, digest: str) -> dict[str, Any] | None:
    """This module's result among ``results`` (an earlier results.json), if made from the same source."""
    if results is None:
        return None
    for result in results:
        if result.get("module") == module:
            if result.get("source_sha256") != digest:
                raise SystemExit(f"{module} changed since the earlier pass: run a full pass (no --again)")
            if "pending_keys" not in result:  # an older harness: its unrun mutants are unknown
                raise SystemExit(f"the earlier results of {module} do not list the mutants left unrun")
            return result
    raise SystemExit(f"the earlier results have no pass of {module}")


def _exec(command: list[str], cwd: Path, env: dict[str, str], minutes: float | None, module: str) -> bool:
    """``cosmic-ray exec``; past ``minutes`` its process group is killed. Whether it finished."""
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    try:
        if process.wait(timeout=None if minutes is None else minutes * 60) != 0:
            raise SystemExit(f"{module}: cosmic-ray exec failed (exit {process.returncode})")
        return True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # cosmic-ray mutates the file in place: the mutant it was testing stays in the clone
        subprocess.run(["git", "checkout", "--", module], cwd=cwd, check=True)
        return False


def run_module(module: str, tests: list[str], clone: Path, timeout: float,
               again: list[dict[str, Any]] | None = None, minutes: float | None = None) -> dict[str, object]:
    """cosmic-ray over one module of the clone; returns its counts and survivors.

    ``again``: an earlier results.json's content; only what it did not kill runs (:func:`_skip_known`).
    ``minutes``: stop the pass after that long; the mutants it ran are a random sample of the
    module's (cosmic-ray runs them in random order), reported with a 95 % interval.
    """
    src = WORK / "src"
    name = module.replace("/", "_").removesuffix(".py")
    config, session = WORK / f"{name}.toml", WORK / f"{name}.sqlite"
    config.write_text(_config(module, tests, timeout), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(clone)}
    cosmic = [str(Path(sys.executable).parent / "cosmic-ray")]
    source = (src / module).read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode()).hexdigest()
    earlier = _earlier(again, module, digest)
    started = time.monotonic()
    subprocess.run([*cosmic, "init", str(config), str(session)], cwd=src, env=env, check=True)
    skipped, carried = _skip_known(session, source, earlier)
    print(f"{module}: {skipped} equivalent mutants not run, {carried} killed in the earlier pass", flush=True)
    baseline = subprocess.run([*cosmic, "baseline", str(config)], cwd=src, env=env,
                              capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{module}: the unmutated tests fail, fix them first:\n{baseline.stdout[-2000:]}")
    finished = _exec([*cosmic, "exec", str(config), str(session)], src, env, minutes, module)
    return {"module": module, "tests": tests, "source_sha256": digest, "finished": finished,
            "seconds": round(time.monotonic() - started, 1), **_results(session, source)}


def main(argv: list[str] | None = None) -> int:
    """Run cosmic-ray over the chosen modules; print and save kill rates and survivors."""
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES),
                        help="only this module (repeatable; default: all)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant's tests")
    parser.add_argument("--again", type=Path, metavar="RESULTS_JSON",
                        help="carry over what this earlier pass killed and run the rest: its "
                             "survivors, and what it left unrun (the module's source must be unchanged)")
    parser.add_argument("--minutes", type=float, help="stop each module's pass after this long "
                        "(partial figures over the random sample it ran; --again continues it)")
    args = parser.parse_args(argv)
    again = None if args.again is None else json.loads(args.again.read_text(encoding="utf-8"))
    clone = _prepare(ROOT)  # removes build/mutation: the earlier results are read first
    results = []
    for module in args.module or list(MODULES):
        result = run_module(module, MODULES[module], clone, args.timeout, again, args.minutes)
        results.append(result)
        partial = "" if result["finished"] else f"PARTIAL, {result['pending']} not run, "
        print(f"{module}: {partial}{result['killed']}/{result['mutants']} killed ({result['kill_rate']}; "
              f"{result['killed_earlier']} of them in the earlier pass; "
              f"{result['equivalent']} equivalent mutants not counted), {result['seconds']} s", flush=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n| module | mutants | killed | kill rate | survivors | equivalent (not counted) | not run |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        rate = "n/a" if r["kill_rate"] is None else f"{100 * float(r['kill_rate']):.0f} %"  # type: ignore[arg-type]
        if "kill_rate_95" in r:
            low, high = (float(x) for x in r["kill_rate_95"])  # type: ignore[attr-defined]
            rate += f" (95 %: {100 * low:.0f}-{100 * high:.0f} %)"
        print(f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {rate} | {r['survived']} "
              f"| {r['equivalent']} | {r['pending']} |")
    print(f"\nsurvivors: {WORK / 'results.json'}")
    return 0
