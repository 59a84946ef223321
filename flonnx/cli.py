"""The ``flonnx`` command line. It parses arguments and calls into exchange/server/simulations."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from flonnx.exchange.errors import FlonnxError
from flonnx.server.progress import literal, wide_console

app = typer.Typer(help="Federated learning across ML frameworks, with ONNX and lineage.",
                  no_args_is_help=True, add_completion=False)
lineage_app = typer.Typer(help="Inspect and verify the lineage of model versions.",
                          no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
deploy_app = typer.Typer(help="Set up a real federation: certificates, node keys, the exact commands.",
                         no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
console = wide_console()
err = wide_console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
RegistryOpt = Annotated[str, typer.Option(
    "--registry", help="Registry directory, or a database URL (postgresql://user@host/db) with --blobs.")]
BlobsOpt = Annotated[str | None, typer.Option(
    "--blobs", help="Where the registry's blobs live: a directory or an fsspec URL (default: "
                    "REGISTRY/blobs; required with a database URL).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run id or unique prefix (default: newest).")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print only the final version of each run (and errors, on stderr).")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="One JSON object per event on stdout, nothing else (docs/lineage.md): \"event\" "
                   "is start (run_id, scenario, initial_version, metrics, resumed_from), progress "
                   "(round, total_rounds, received, sampled, rejected, elapsed_s, eta_s; after each "
                   "reply), round (round, total_rounds, sampled, accepted, frameworks, rejected: a "
                   "list of client and reason, metrics, version_id, seconds), note (text), sites "
                   "(sites, failed, summary) or finish (run_id, rounds, final_version). NaN is null. "
                   "Errors go to stderr.")]
SigningKeyOpt = Annotated[Path | None, typer.Option(
    "--signing-key", help="Sign every version with this Ed25519 private key (PEM, kept outside the "
                          "registry; flonnx lineage keygen makes one). A signed run resumes with it.")]


def _friendly(fn: F) -> F:
    """Print flonnx errors (one line, literally: they quote user and registry text) and exit 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlonnxError as exc:
            err.print(f"[red]error:[/] {literal(exc)}", soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _open(registry: str, blobs: str | None = None, *, migrate: bool = False) -> Any:
    """An existing registry, read-only unless ``migrate`` (a writer may upgrade an old one)."""
    from flonnx.exchange.registry import Registry

    return Registry(registry, create=False, blobs=blobs, migrate=migrate)


def _where(registry: str, blobs: str | None) -> dict[str, Any]:
    """The registry's run-config keys."""
    return {"registry": str(registry), **({"blobs": blobs} if blobs else {})}


def _signing(key: Path | None) -> dict[str, str]:
    """The signing key's run-config key (an absolute path: the coordinator may run elsewhere)."""
    return {} if key is None else {"signing-key": str(key.expanduser().resolve())}


def _masked(location: str) -> str:
    from flonnx.exchange.registry import mask_url

    return mask_url(str(location))


@contextmanager
def _exit_when_stopped(registry: str, blobs: str | None) -> Iterator[None]:
    """A simulation stopped by SIGINT or SIGTERM: one line saying how to resume, exit 130 or 143."""
    from flonnx.server.stopping import Interrupted

    try:
        yield
    except Interrupted as exc:
        line = str(exc)
        if exc.resumable:
            command = ["flonnx", "resume", str(exc.run_id), "--registry", _masked(registry)]
            command += ["--blobs", _masked(blobs)] if blobs else []
            line += f"; continue it with: {shlex.join(command)}"
        err.print(literal(line), soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


Opt = typer.Option


def _reporter(quiet: bool, as_json: bool) -> Any:
    """The reporter the output options ask for (None: the federation's ConsoleReporter)."""
    from flonnx.server.progress import JsonReporter, QuietReporter

    if quiet and as_json:
        raise FlonnxError("--quiet and --json exclude each other")
    if as_json:
        return JsonReporter()
    return QuietReporter(console) if quiet else None


@app.command()
@_friendly
def simulate(
    spec: Annotated[str | None, typer.Argument(
        help="A preset name (flonnx scenarios) or a spec file (.toml); default digits-mixed, or "
             "nothing when --model is given.")] = None,
    data: Annotated[str | None, Opt(help="Data: a built-in dataset or a CSV/Parquet/NPZ file.")] = None,
    label: Annotated[str | None, Opt(help="Label column of the data.")] = None,
    model: Annotated[str | None, Opt(help="Zoo name, .onnx file or module:callable.")] = None,
    task: Annotated[str | None, Opt(help="classification, binary or regression.")] = None,
    clients: Annotated[int | None, Opt(help="Number of simulated clients.")] = None,
    frameworks: Annotated[str | None, Opt(help="Framework counts, e.g. torch:2,jax:2,sklearn:2.")] = None,
    partition: Annotated[str | None, Opt(
        help="iid, dirichlet:ALPHA, shards:K or column:NAME.")] = None,
    fraction_train: Annotated[float | None, Opt(help="Share of clients sampled per round.")] = None,
    rounds: Annotated[int | None, Opt(help="Number of rounds (default: the spec's).")] = None,
    seed: Annotated[int | None, Opt(help="Run seed (default: the spec's).")] = None,
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    strategy: Annotated[list[str] | None, Opt(
        help="Strategy name or module:Class; repeat to run one registry run per strategy.")] = None,
    strategy_config: Annotated[list[str] | None, Opt(
        "--strategy-config",
        help="Strategy parameter key=value, or NAME.key=value for one strategy (repeatable).")] = None,
    min_train_nodes: Annotated[int | None, Opt(help="Fewest valid updates a round needs.")] = None,
    standardize: Annotated[bool | None, Opt(
        "--standardize/--no-standardize", help="Federated feature standardisation (spec default).")
    ] = None,
    retention: Annotated[str | None, Opt(
        help="Which client updates keep their blobs: all, or last:K (the last K rounds); spec's "
             "[registry] retention.")] = None,
    compress: Annotated[bool | None, Opt(
        "--compress/--no-compress", help="Store blobs compressed (ids unchanged); spec's [registry] "
                                         "compress.")] = None,
    verbose: Annotated[bool, Opt(help="Show Flower's and Ray's logs.")] = False,
    report: Annotated[Path | None, Opt(
        "--report", help="Write the HTML report of the run(s) here at the end (as flonnx report).")] = None,
    signing_key: SigningKeyOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a federation spec on Flower's Simulation Engine and record every version.

    SPEC is a preset name (flonnx scenarios) or a spec file (.toml, docs/spec.md); default
    digits-mixed, or nothing but the flags when --model is given. The flags override its keys.
    On a terminal a status line shows each round's replies as they arrive; --quiet and --json are
    for scripts.
    """
    from flonnx.exchange.spec import load_spec, parse_spec
    from flonnx.simulations.runner import plan
    from flonnx.simulations.runner import simulate as run

    if rounds is not None and rounds < 1:
        raise FlonnxError(f"--rounds must be at least 1, got {rounds}")
    reporter = _reporter(quiet, as_json)
    overrides = {
        "data.source": data, "data.label": label, "model": model, "task": task, "clients": clients,
        "frameworks": frameworks, "data.partition": partition, "fraction-train": fraction_train,
        "rounds": rounds, "seed": seed, "min-train-nodes": min_train_nodes,
        "standardize": standardize, "registry.retention": retention, "registry.compress": compress,
        "strategy": " ".join(strategy) if strategy else None,
        "strategy-config": " ".join(strategy_config) if strategy_config else None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if spec is None and model is not None:
        tables = {table: {k.partition(".")[2]: v for k, v in overrides.items() if k.startswith(f"{table}.")}
                  for table in ("data", "registry")}
        fed = parse_spec({k: v for k, v in overrides.items() if "." not in k}
                         | ({"data": tables["data"]} if data else {})
                         | ({"registry": tables["registry"]} if tables["registry"] else {}),
                         source="command line")
    else:
        fed = load_spec(spec or "digits-mixed", overrides)
    from flonnx.server.app import run_plan

    simulation = plan(fed)
    where = {**_where(registry, blobs), **_signing(signing_key)}
    # fail before Ray starts: registry, min-train-nodes, strategy and signing key checked
    run_plan({**where, "min-available-nodes": simulation["num_clients"]}, fed)
    if reporter is None:
        _print_plan(fed, simulation)
        console.print("[dim]starting Flower's simulation engine…[/]")
    with _exit_when_stopped(registry, blobs):
        run_ids = run(fed, overrides=where, verbose=verbose, simulation=simulation, reporter=reporter)
    if report is not None:
        _write_report(registry, blobs, run_ids, report, quiet=reporter is not None)
    if len(run_ids) > 1 and reporter is None:
        console.print(f"runs: {literal(' '.join(run_ids))}", soft_wrap=True)


def _print_plan(spec: Any, simulation: dict[str, Any]) -> None:
    console.print(f"[bold]{literal(spec.name)}[/]: {literal(spec.description or spec.model)}",
                  soft_wrap=True)
    console.print(  # the facts as run (the description is prose and may not name the overrides)
        f"[dim]{simulation['num_clients']} clients ({literal(spec.framework_mix)}) · model "
        f"{literal(Path(spec.model).name)} · task {literal(spec.task)} · strategy "
        f"{literal(spec.strategy)} · {spec.rounds} rounds · seed {spec.seed}[/]", soft_wrap=True)
    table = Table(title="partitions")
    for column in ("client", "framework", "rows", "labels"):
        table.add_column(column)
    for c in simulation["clients"][:20]:
        labels = c.get("labels") or c.get("histogram") or {
            k: v for k, v in c.items() if k in ("mean", "std")}
        text = " ".join(f"{k}:{v if isinstance(v, int) else f'{v:.3g}'}"
                        for k, v in dict(labels).items()) if isinstance(labels, dict) else str(labels)
        fault = f" (fault={c['fault']})" if "fault" in c else ""
        table.add_row(literal(c["client"]), literal(c["framework"] + fault), str(c.get("rows", "")),
                      literal(text))
    if len(simulation["clients"]) > 20:
        table.add_row("…", f"{len(simulation['clients']) - 20} more", "", "")
    console.print(table)


@app.command()
@_friendly
def scenarios() -> None:
    """List the built-in federation presets (spec files in simulations/specs/)."""
    from flonnx.exchange.spec import BUILTIN_SPEC_DIR, builtin_specs

    table = Table(title=f"presets in {literal(BUILTIN_SPEC_DIR)}")
    table.add_column("name")
    table.add_column("description")
    for name, description in builtin_specs().items():
        table.add_row(literal(name), literal(description))
    console.print(table)


@app.command()
@_friendly
def resume(
    runs: Annotated[list[str], typer.Argument(help="Run id(s) or unique prefixes, same spec.")],
    rounds: Annotated[int | None, typer.Option(
        help="New total number of rounds (default: the run's planned total).")] = None,
    min_train_nodes: Annotated[int | None, typer.Option(
        help="New fewest valid updates a round needs (default: the run's), e.g. to continue a run "
             "that failed for too few; recorded with the run.")] = None,
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs.")] = False,
    signing_key: SigningKeyOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue stopped or failed runs from their last committed round, strategy state included."""
    from flonnx.exchange.writable import check_registry_writable
    from flonnx.server.app import run_plan
    from flonnx.server.settings import Settings
    from flonnx.simulations.runner import simulate as run

    reporter = _reporter(quiet, as_json)
    check_registry_writable(registry, blobs)  # a resume writes: say so before opening it to migrate
    reg = _open(registry, blobs, migrate=True)
    run_ids = [reg.resolve_run(r) for r in runs]
    stored = [Settings.from_json(reg.run(r).config) for r in run_ids]
    for run_id in run_ids:  # a run another live process writes is refused before Ray starts
        with reg.lock_run(run_id):
            reg.check_intact(run_id)  # and so is a damaged one
    reg.close()
    specs = {s.spec.for_strategy("", {}).id for s in stored}
    if len(specs) != 1:
        raise FlonnxError("runs resumed together must share a spec (apart from the strategy)")
    overrides: dict[str, Any] = {**_where(registry, blobs), "resume": " ".join(run_ids),
                                 **_signing(signing_key)}
    if rounds is not None:
        overrides["num-server-rounds"] = rounds
    if min_train_nodes is not None:
        overrides["min-train-nodes"] = min_train_nodes
    plans = run_plan(overrides)  # fail before Ray starts
    with _open(registry, blobs) as check:
        for plan in plans:
            done = max(check.heads(plan.resume), default=0)
            if done >= plan.rounds and check.run(plan.resume).status == "completed":
                raise FlonnxError(
                    f"run {plan.resume} already has {done} of {plan.rounds} rounds; pass --rounds N "
                    f"with N > {done}"
                )
    with _exit_when_stopped(registry, blobs):
        run(stored[0].spec, overrides=overrides, verbose=verbose, reporter=reporter)


@app.command()
@_friendly
def runs(registry: RegistryOpt = "runs", blobs: BlobsOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List the runs in a registry.

    A run marked running that no live process writes (none holds its lock) is shown as stopped: the
    process that ran it died; `flonnx resume` continues it.
    """
    with _open(registry, blobs) as reg:
        infos = reg.runs()
        live = {i.run_id for i in infos if i.status == "running" and reg.is_being_written(i.run_id)}
    rows = [{**i.__dict__, "live": i.run_id in live,
             "status": "stopped" if i.status == "running" and i.run_id not in live else i.status}
            for i in infos]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("run", "created", "spec", "seed", "status", "rounds", "head"):
        table.add_column(column)
    for r in rows:
        status = "stopped (process gone)" if r["status"] == "stopped" else r["status"]
        table.add_row(literal(r["run_id"]), literal(r["created_at"]), literal(r["scenario"]),
                      str(r["seed"]), literal(status), str(r["last_round"]),
                      literal((r["head"] or "")[:12]))
    console.print(table)


@app.command()
@_friendly
def nodes(
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    run: Annotated[str | None, typer.Option(
        "--run", help="Only this run (id or unique prefix; default: every run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Documented JSON list of nodes.")] = False,
) -> None:
    """List every node that sent an update or a refusal: framework, last seen, updates, refusals."""
    from flonnx.server.nodes import known_nodes

    with _open(registry, blobs) as reg:
        run_id = None if run is None else reg.resolve_run(run)
        rows = known_nodes(reg, run_id)
    if as_json:
        print(json.dumps([n.to_dict() for n in rows], indent=2))
        return
    if not rows:
        console.print(f"no nodes recorded in {literal(_masked(registry))}"
                      + ("" if run_id is None else f" (run {literal(run_id)})"), soft_wrap=True)
        return
    table = Table(title=f"nodes of {'every run' if run_id is None else 'run ' + literal(run_id)}")
    for column in ("client", "framework", "flonnx", "last run", "round", "run created", "updates",
                   "refusals", "last refusal"):
        # untrusted text folds rather than being cut; the short facts keep one line when they fit
        table.add_column(column, justify="right" if column in ("round", "updates", "refusals") else "left",
                         overflow="fold", no_wrap=column not in ("client", "last refusal"))
    for n in rows:
        framework = " ".join(filter(None, (n.framework, n.framework_version))) or "-"
        if n.changed_framework:
            earlier = ", ".join(f for f in n.frameworks if f != n.framework)
            framework += f" (earlier: {earlier})"
        table.add_row(literal(n.client), literal(framework), literal(n.flonnx_version or "-"),
                      literal(n.last_run), str(n.last_round), literal(n.last_run_created_at or "-"),
                      str(n.updates), str(n.refusals), literal(n.last_refusal or ""))
    console.print(table)


@lineage_app.command("ls")
@_friendly
def lineage_ls(
    run: RunOpt = None,
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Documented JSON list of records.")] = False,
) -> None:
    """List every version of a run."""
    reg = _open(registry, blobs)
    run_id = reg.resolve_run(run)
    versions = reg.versions(run_id)
    if as_json:
        print(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    table = Table(title=f"run {literal(run_id)}")
    for column in ("version", "kind", "round", "parents", "definition", "weights", "framework",
                   "client", "examples", "metrics"):
        table.add_column(column)
    for v in versions:
        r = v.record
        metrics = literal(" ".join(f"{k}={val:.4g}" for k, val in sorted(r.metrics.items())))
        if r.reason:
            metrics = f"[yellow]reason:[/] {literal(r.reason)}"
        table.add_row(
            literal(v.version_id[:12]), r.kind.value, str(r.round),
            literal(" ".join(p[:8] for p in r.parents)), literal(r.definition_id[:8]),
            literal(r.weights_id[:8]), literal(r.framework), literal(r.client), str(r.num_examples),
            metrics,
        )
    console.print(table)


@lineage_app.command("show")
@_friendly
def lineage_show(
    version: Annotated[str, typer.Argument(help="Version id or unique prefix.")],
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    run: Annotated[str | None, typer.Option(
        "--run", help="As this run recorded it (default: the first run that did).")] = None,
    card: Annotated[bool, typer.Option(
        "--card", help="Print the version's model card (Markdown) instead: the stable card that "
                       "flonnx export writes into the file.")] = False,
) -> None:
    """Print one version's full lineage record as JSON, in the form of `lineage ls --json`."""
    with _open(registry, blobs) as reg:
        version_id = reg.resolve_version(version)
        run_id = None if run is None else reg.resolve_run(run)
        if card:
            from flonnx.exchange.card import render_markdown, stable_card
            from flonnx.exchange.export import served_version

            _, model = served_version(reg, version_id)
            print(render_markdown(stable_card(reg, version_id, model)), end="")
            return
        print(json.dumps(reg.stored_version(version_id, run_id).to_dict(), indent=2))


@lineage_app.command("verify")
@_friendly
def lineage_verify(run: RunOpt = None, registry: RegistryOpt = "runs", blobs: BlobsOpt = None,
                   all_runs: Annotated[bool, typer.Option("--all", help="Every run.")] = False,
                   key: Annotated[Path | None, typer.Option(
                       "--key", help="Check every signature with this public key (PEM or hex); "
                                     "default: each run's recorded key.")] = None) -> None:
    """Re-hash every record and blob and check every signature; exit 1 naming each mismatch."""
    from flonnx.exchange.signing import load_public_key

    public = None if key is None else load_public_key(key)
    reg = _open(registry, blobs)
    run_id = None if all_runs else reg.resolve_run(run)
    checked, problems = reg.verify(run_id, public)
    scope = "all runs" if run_id is None else f"run {run_id}"
    if public is not None:
        console.print(f"signatures checked with the given key {public.fingerprint[:16]}")
    else:
        for signed_run, recorded in reg.signing_keys(run_id).items():
            console.print(
                f"run {literal(signed_run)}: unsigned" if recorded is None else
                f"run {literal(signed_run)}: signatures checked against the run's own recorded key "
                f"{recorded.fingerprint[:16]} (give --key to check them against a key you trust)",
                soft_wrap=True)
    if problems:
        for problem in problems:
            err.print(f"[red]mismatch:[/] {literal(problem)}", soft_wrap=True)
        err.print(f"[red]{len(problems)} problem(s)[/] in {literal(scope)} ({checked} items checked)")
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {checked} records and blobs of {literal(scope)} re-hash to their ids")


@lineage_app.command("keygen")
@_friendly
def lineage_keygen(
    out: Annotated[Path, Opt("-o", "--out", help="Folder for signing.key, signing.pub and "
                                                  "signing.pub.hex.")] = Path("."),
) -> None:
    """Make the coordinator's Ed25519 signing key pair (simulate/resume --signing-key)."""
    from flonnx.exchange.signing import load_public_key, write_key_pair

    private, public, raw = write_key_pair(out)
    console.print(f"private key {literal(str(private))} (keep it outside the registry; mode 600)",
                  soft_wrap=True)
    console.print(f"public key  {literal(str(public))} and {literal(str(raw))} (fingerprint "
                  f"{load_public_key(public).fingerprint[:16]}; give it to whoever verifies)",
                  soft_wrap=True)


@app.command("verify-model")
@_friendly
def verify_model(
    model: Annotated[Path, typer.Argument(help="An ONNX file flonnx export wrote.")],
    key: Annotated[Path, typer.Option("--key", help="The coordinator's public key (PEM or hex).")],
) -> None:
    """Check an exported file before loading it: hashes, embedded record and signature; exit 1 if not."""
    from flonnx.exchange.signed_export import verify_model_file
    from flonnx.exchange.signing import load_public_key

    public = load_public_key(key)
    problems = verify_model_file(model, public)
    if problems:
        for problem in problems:
            err.print(f"[red]problem:[/] {literal(problem)}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]verified[/]: {literal(str(model))} is the signed version it names, signed "
                  f"by key {public.fingerprint[:16]}", soft_wrap=True)


@lineage_app.command("migrate")
@_friendly
def lineage_migrate(registry: RegistryOpt = "runs", blobs: BlobsOpt = None) -> None:
    """Upgrade a registry made by an older flonnx to this version's schema.

    Read-only commands (runs, lineage ls/show/verify, export) refuse an old registry until a writer
    (this command, simulate or resume) has opened it once.
    """
    with _open(registry, blobs, migrate=True) as reg:
        done = (f"applied migration(s) {', '.join(map(str, reg.migrated))}" if reg.migrated
                else "nothing to do")
        console.print(f"registry {literal(reg.location)}: schema version {reg.schema_version} "
                      f"({done})", soft_wrap=True)


@lineage_app.command("replay")
@_friendly
def lineage_replay(
    run: Annotated[str | None, typer.Argument(help="Run id or unique prefix (default: newest).")] = None,
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
) -> None:
    """Re-aggregate every round from the recorded updates; exit 1 naming the first round that differs.

    Rounds whose updates the run's retention let go of are listed as not replayed; exit 1 if that
    is every round.
    """
    from flonnx.server.replay import replay_run

    reg = _open(registry, blobs)
    run_id = reg.resolve_run(run)
    report = replay_run(reg, run_id)
    for item in report.rounds:
        if item.pruned:
            console.print(f"round {item.round}: [yellow]{literal(item.problem)}[/]", soft_wrap=True)
            continue
        mark = "[green]ok[/]" if item.ok else "[red]MISMATCH[/]"
        console.print(f"round {item.round}: {mark} weights {literal(item.weights_id[:12])}"
                      + ("" if item.ok else f" ({literal(item.problem)})"), soft_wrap=True)
    if not report.ok:
        bad = next(r for r in report.rounds if not r.ok and not r.pruned)
        err.print(f"[red]replay of run {literal(run_id)} differs at round {bad.round}[/]: "
                  f"{literal(bad.problem)}", soft_wrap=True)
        raise typer.Exit(1)
    replayed = len(report.rounds) - len(report.pruned)
    if replayed == 0 and report.pruned:  # a check that checked nothing must not pass
        err.print(f"[red]nothing replayed[/]: the retention of run {literal(run_id)} let go of the "
                  "client updates of every round", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {replayed} round(s) of run {literal(run_id)} re-aggregate "
                  f"bit for bit with {literal(report.strategy)}", soft_wrap=True)
    if report.pruned:
        rounds = ", ".join(map(str, report.pruned))
        console.print(f"[yellow]not replayed[/]: round(s) {rounds}, whose client updates the run's "
                      "retention let go of", soft_wrap=True)


@app.command("export")
@_friendly
def export(
    version: Annotated[str, typer.Argument(help="Version id or unique prefix.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .onnx file.")],
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT (and CARD) if it exists.")] = False,
    card: Annotated[Path | None, typer.Option(
        "--card", help="Also write the model card as Markdown to this file.")] = None,
    quantize: Annotated[str | None, typer.Option(
        "--quantize", help="int8: ONNX Runtime dynamic quantisation, measured on the run's "
                           "evaluation data.")] = None,
    float16: Annotated[bool, typer.Option(
        "--float16", help="Store the float32 weights as float16 (cast back to float32 in the graph), "
                          "measured on the run's evaluation data.")] = False,
    max_drop: Annotated[float, typer.Option(
        "--max-drop", help="With --quantize or --float16: refuse if the headline metric drops more "
                           "than this many percentage points.")] = 1.0,
) -> None:
    """Write a standalone ONNX file (with model card metadata) of any version.

    The file appears whole or not at all (a temporary file renamed into place); an existing OUTPUT
    is kept unless --force. Its metadata_props hold the model card (docs/model-card.md): the stable
    card under flonnx.card.* (the same as `flonnx lineage show VERSION --card`) and ONNX Runtime's
    timings on this machine under flonnx.measured.*. Every export is checked before it is written:
    onnx.checker (full check), ONNX Runtime loads it, and a full-precision file's outputs equal the
    registry's weights' (a derived int8/float16 file: its measured metric change, see --max-drop).
    """
    from flonnx.exchange.card import MEASURED_PREFIX, card_from_metadata, render_markdown
    from flonnx.exchange.export import export_version, write_bytes, write_model

    reg = _open(registry, blobs)
    version_id = reg.resolve_version(version)
    if card is not None and card.exists() and not force:
        raise FlonnxError(f"{card} exists; not replaced (flonnx export --force replaces it)")
    if quantize not in (None, "int8"):
        raise typer.BadParameter(f"{quantize!r} is not a supported quantisation; use int8",
                                 param_hint="--quantize")
    if quantize and float16:
        raise typer.BadParameter("give --quantize int8 or --float16, not both", param_hint="--float16")
    kind = "float16" if float16 else quantize
    if kind:
        from flonnx.exchange.card import example_inputs, measured_card
        from flonnx.exchange.quantize import derived_version

        derived = derived_version(reg, version_id, kind, max_drop=max_drop)
        model = derived.model
        for key, value in measured_card(model, example_inputs(model)).items():
            model.metadata_props.add(key=key, value=value)
    else:
        model = export_version(reg, version_id, measure=True)
    path = write_model(model, output, overwrite=force)
    console.print(f"wrote {literal(path)} (version {literal(version_id[:12])})", soft_wrap=True)
    if kind:
        console.print(f"{kind}: weights {derived.bytes_before} -> {derived.bytes_after} bytes; "
                      f"{derived.metric} {derived.before:.4f} -> {derived.after:.4f} on the evaluation data",
                      soft_wrap=True)
    if card is not None:
        measured = {p.key: p.value for p in model.metadata_props if p.key.startswith(MEASURED_PREFIX)}
        derived_facts = {p.key: p.value for p in model.metadata_props if p.key.startswith("flonnx.derived.")}
        text = render_markdown(card_from_metadata(model.metadata_props), measured, derived_facts)
        write_bytes(text.encode("utf-8"), card, overwrite=force)
        console.print(f"wrote {literal(card)} (model card)", soft_wrap=True)


@app.command()
@_friendly
def check(
    model: Annotated[Path, typer.Argument(help="ONNX file to check.", exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random probe inputs.")] = 0,
) -> None:
    """Validate an ONNX file and tell which installed framework can train it, with parity.

    A file whose opset is too old for ONNX Runtime is upgraded (onnx.version_converter), checked against
    onnx.reference on the original, and the table is computed on the upgraded model. Exits 1 when the
    file is invalid, ONNX Runtime cannot run it even after an upgrade, or no installed framework could
    be checked.

    --json adds to the report: "conversion" (null, or from_opset, to_opset, checked_with, max_abs_diff,
    max_rel_diff, reason, probe_batch, probe_seed), "runnable" (ONNX Runtime ran the checked model) and
    "has_verdict" (false exactly when the exit code is 1). "definition_id", "opsets" and "parameters"
    describe the upgraded model when there was a conversion. "exported_from" is null, or for a file
    flonnx export wrote its model card's version_id and definition_id (the same definition id unless
    preprocessing was wrapped around the graph).
    """
    from flonnx.exchange.check import check_model

    report = check_model(model, seed=seed)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        status = "[green]valid[/]" if report.valid else "[red]invalid[/]"
        console.print(f"{literal(model)}: {status}", soft_wrap=True)
        for problem in report.problems:
            console.print(f"  [red]problem:[/] {literal(problem)}", soft_wrap=True)
        if report.conversion:
            c = report.conversion
            console.print(f"  [yellow]upgraded[/] from opset {c['from_opset']} to {c['to_opset']} "
                          f"({literal(c['reason'])}); parity with {literal(c['checked_with'])} max |diff| "
                          f"{c['max_abs_diff']:.2g}", soft_wrap=True)
        if report.valid:
            console.print(f"  definition {report.definition_id[:12]} · opsets {literal(report.opsets)} · "
                          f"inputs {literal(report.inputs)} · outputs {literal(report.outputs)} · "
                          f"{report.parameters} parameters", soft_wrap=True)
        if report.exported_from:
            version, of = report.exported_from["version_id"], report.exported_from["definition_id"]
            console.print(f"  exported from version {literal(version[:12])}" + (
                "" if of == report.definition_id else
                f" of definition {literal(of[:12])} (its preprocessing is part of this file's graph)"),
                soft_wrap=True)
        if report.frameworks:
            table = Table()
            for column in ("framework", "installed", "trains it", "parity max abs / rel", "notes"):
                table.add_column(column)
            for fw in report.frameworks:
                parity = (f"{fw.parity['max_abs']:.2e} / {fw.parity['max_rel']:.2e} "
                          f"{'pass' if fw.parity['passed'] else 'FAIL'}") if fw.parity else "–"
                notes = "missing: " + ", ".join(fw.missing_ops) if fw.missing_ops else fw.note
                table.add_row(fw.framework, "yes" if fw.installed else "no",
                              "yes" if fw.trainable else "no", parity, literal(notes or fw.how))
            console.print(table)
        if report.valid and not report.has_verdict:
            console.print("  [red]no verdict:[/] flonnx cannot say which framework can train this file",
                          soft_wrap=True)
    if not report.has_verdict:
        raise typer.Exit(1)

@app.command("check-data")
@_friendly
def check_data(
    data: Annotated[str, typer.Argument(help="The site's data file (CSV, TSV, Parquet or NPZ).")],
    label: Annotated[str, Opt(help="The label column.")],
    task: Annotated[str, Opt(help="classification, binary or regression.")] = "classification",
    features: Annotated[str | None, Opt(help="Feature columns, comma-separated (default: all "
                                             "but the label).")] = None,
    categorical: Annotated[str | None, Opt(help="Categorical columns, comma-separated.")] = None,
    missing: Annotated[str | None, Opt(help="What to do with missing values: refuse or impute.")] = None,
    min_rows: Annotated[int | None, Opt(help="Fewest rows the site accepts.")] = None,
) -> None:
    """Check a site's data file exactly as its node will read it, before joining a federation.

    Prints rows, feature columns and the values of categorical columns, or the one-line refusal the
    node would send (which names file, row and column, never a cell's value). Nothing leaves the site.
    """
    import numpy as np

    from flonnx.exchange.sources import node_source
    from flonnx.exchange.task import HEADLINE_METRIC

    if task not in HEADLINE_METRIC:
        raise typer.BadParameter(f"{task!r} is not one of {', '.join(HEADLINE_METRIC)}", param_hint="--task")
    config: dict[str, Any] = {"data": data, "label": label}
    for key, value in (("features", features), ("categorical", categorical), ("missing", missing),
                       ("min-rows", min_rows)):
        if value is not None:
            config[key] = value  # as a SuperNode's --node-config gives it
    source = node_source(config, None, task)
    columns = source.features()
    categories = source.categories()
    x, y = source.load(tuple((c, tuple(v)) for c, v in sorted(categories.items())) if categories else None)
    console.print(f"{literal(source.describe())}: {len(y)} rows, {len(columns)} feature columns "
                  f"({x.shape[1]} model inputs), task {task}", soft_wrap=True)
    console.print("features: " + literal(", ".join(columns)), soft_wrap=True)
    for column, values in sorted(categories.items()):
        console.print(f"categorical {literal(column)}: {len(values)} values", soft_wrap=True)
    if task != "regression":
        console.print(f"classes: {len(np.unique(y))}", soft_wrap=True)
    console.print("[green]ok[/]: a node with this file and label would join")


@deploy_app.command("init")
@_friendly
def deploy_init(
    folder: Annotated[Path, typer.Argument(help="New (or empty) folder for the consortium's files.")],
    hosts: Annotated[str, Opt(help="The SuperLink's host names and IP addresses, comma-separated (the "
                                   "certificate's SANs; the first is the address nodes dial).")],
    nodes: Annotated[str, Opt(help="Node names (client ids), comma-separated.")],
    frameworks: Annotated[str, Opt(help="One framework for every node, or one per node, "
                                        "comma-separated (torch, jax, sklearn).")] = "sklearn",
    data_dir: Annotated[Path | None, Opt(help="Folder of the nodes' data files (NAME.csv); "
                                              "default FOLDER/data.")] = None,
    label: Annotated[str, Opt(help="Label column of the nodes' data files.")] = "label",
    listen: Annotated[str, Opt(help="Address the SuperLink listens on.")] = "0.0.0.0",
    port: Annotated[int, Opt(help="The SuperLink's port.")] = 8000,
    node_port_base: Annotated[int, Opt(help="Runtime API port of the first node; the next nodes "
                                            "count up (one port per node on one host).")] = 9094,
    spec: Annotated[Path | None, Opt(help="The coordinator's federation spec (default: a starter "
                                          "FOLDER/federation.toml).")] = None,
    registry: Annotated[Path | None, Opt(help="The coordinator's registry (default "
                                              "FOLDER/registry).")] = None,
    connection: Annotated[str, Opt(help="Name of the flwr connection.")] = "flonnx",
) -> None:
    """Create a development CA, the SuperLink certificate, one key pair per node and the commands.

    Writes FOLDER/COMMANDS.md (the commands in order) and FOLDER/consortium.json (the same, as
    argument lists). See docs/joining.md.
    """
    from flonnx.server.deploy import init_consortium

    consortium = init_consortium(
        folder, hosts=hosts.split(","), nodes=nodes.split(","), frameworks=frameworks.split(","),
        data_dir=data_dir, label=label, listen=listen, port=port, node_port_base=node_port_base,
        spec=str(spec) if spec else None, registry=registry, connection=connection)
    console.print(f"wrote a development consortium to {literal(str(consortium.folder))}: CA, SuperLink "
                  f"certificate for {literal(hosts)}, keys of {len(consortium.nodes)} nodes", soft_wrap=True)
    console.print(f"next: follow {literal(str(consortium.folder / 'COMMANDS.md'))}", soft_wrap=True)


@deploy_app.command("keygen")
@_friendly
def deploy_keygen(
    name: Annotated[str, typer.Argument(help="The node's name (its client id).")],
    out: Annotated[Path, Opt("-o", "--out", help="Folder for NAME.key and NAME.pub.")] = Path("."),
) -> None:
    """Make a node's authentication key pair at the site; send only NAME.pub to the coordinator."""
    from flonnx.server.deploy import write_node_keys

    private, public = write_node_keys(name, out.expanduser().resolve())
    console.print(f"private key {literal(str(private))} (keep it at this site; mode 600)", soft_wrap=True)
    console.print(f"public key  {literal(str(public))} (send this one to the coordinator)", soft_wrap=True)


@app.command("report")
@_friendly
def report(
    runs: Annotated[list[str] | None, typer.Argument(
        help="Run ids or unique prefixes (default: the newest run); several share the plots' axes.")] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="The HTML file to write.")] = Path("report.html"),
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
) -> None:
    """Write one self-contained HTML report of runs: plots per round, rejections, lineage, spec.

    The file opens offline (inline SVG, no script, nothing fetched); docs/report.md says what it shows.
    """
    with _open(registry, blobs) as reg:
        run_ids = list(dict.fromkeys(reg.resolve_run(r) for r in runs)) if runs else [reg.resolve_run()]
    _write_report(registry, blobs, run_ids, output)


def _write_report(registry: str, blobs: str | None, run_ids: list[str], output: Path, *,
                  quiet: bool = False) -> None:
    from flonnx.server.report import write_report

    with _open(registry, blobs) as reg:
        path = write_report(reg, run_ids, output)
    if not quiet:
            console.print(f"wrote {literal(str(path))} ({len(run_ids)} run(s), "
                      f"{path.stat().st_size / 1024:.0f} KB)", soft_wrap=True)


@lineage_app.command("graph")
@_friendly
def lineage_graph(
    run: Annotated[str | None, typer.Argument(help="Run id or unique prefix (default: newest).")] = None,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="The SVG file to write.")] = Path("lineage.svg"),
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
) -> None:
    """Draw a run's version DAG as SVG: initial, updates by framework, rejected replies, aggregates."""
    from flonnx.server.report import lineage_svg

    with _open(registry, blobs) as reg:
        run_id = reg.resolve_run(run)
        svg = lineage_svg(reg, run_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(svg, encoding="utf-8")
    console.print(f"wrote {literal(str(output))} (run {literal(run_id)}, {len(svg.encode()) / 1024:.0f} KB)",
                  soft_wrap=True)


@lineage_app.command("best")
@_friendly
def lineage_best(
    run: Annotated[str | None, typer.Argument(help="Run id or unique prefix (default: newest).")] = None,
    metric: Annotated[str, typer.Option(
        "--metric", help="A metric the run's rounds recorded (loss, mse, mae: lower is better)."
    )] = "accuracy",
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Name the aggregate version of the run's best round by one metric (ties: the earliest round)."""
    from flonnx.exchange.best import best_round

    with _open(registry, blobs) as reg:
        best = best_round(reg, reg.resolve_run(run), metric)
    if as_json:
        print(json.dumps(best.to_dict(), indent=2))
        return
    console.print(f"{literal(best.version_id)} round {best.round} of {best.rounds}: "
                  f"{literal(best.metric)}={best.value:.6g} ({'lower' if best.lower_is_better else 'higher'}"
                  f" is better; run {literal(best.run_id)})", soft_wrap=True)


@app.command("predict")
@_friendly
def predict(
    version: Annotated[str, typer.Argument(help="Version id or unique prefix (not a rejected reply).")],
    data: Annotated[Path, Opt("--data", help="A table with the spec's feature columns (CSV, TSV, "
                                             "Parquet or NPZ); other columns are ignored.")],
    output: Annotated[Path, Opt("-o", "--output", help="The predictions CSV to write.")] = Path(
        "predictions.csv"),
    registry: RegistryOpt = "runs",
    blobs: BlobsOpt = None,
    force: Annotated[bool, Opt("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Run a version (its exported model, preprocessing included) with ONNX Runtime on a table.

    Writes one line per input row: row (1 = first data row), prediction (the class in the label's
    own values when the spec names the classes, else its index; or the regression value) and, for a
    classifier, each class's probability p(CLASS).
    """
    from flonnx.exchange.data import read_table
    from flonnx.exchange.export import write_bytes
    from flonnx.exchange.predict import predict_table

    if output.exists() and not force:  # before any work; write_bytes checks again atomically
        raise FlonnxError(f"{output} exists; not replaced (flonnx predict --force replaces it)")
    table = read_table(data)
    with _open(registry, blobs) as reg:
        version_id = reg.resolve_version(version)
        predictions = predict_table(reg, version_id, table)
    path = write_bytes(predictions.to_csv().encode("utf-8"), output, overwrite=force,
                       command="flonnx predict")
    console.print(f"wrote {literal(str(path))}: {len(predictions.rows)} predictions of version "
                  f"{literal(version_id[:12])}", soft_wrap=True)


def main() -> None:
    """Entry point of the ``flonnx`` command."""
    app(sys.argv[1:], prog_name="flonnx")


if __name__ == "__main__":
    main()
