"""The federation spec: one TOML file that states a whole federation (schema in ``docs/spec.md``).

A spec names the model, the task, the strategy and training settings, and, for simulation, the data
and how it is partitioned among clients. The server reads the model, task, strategy and evaluation
source from it; a simulated node reads its data source from it (a real node names its own data in
node config). Validation names the offending key and the allowed values.

Overrides (``flonnx simulate --clients 3``, ``--run-config``) are applied to the raw mapping before
validation, so a spec from a file and a spec from flags go through the same checks.

The run records the spec canonically: :meth:`FederationSpec.canonical` replaces every file path by
the SHA-256 of the file's content, so a spec's id does not depend on where a clone lives.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from flonnx.exchange.data.builtin import BUILTIN_DATASETS as _BUILTIN_TABLE
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.frameworks import FRAMEWORKS as _FRAMEWORK_TABLE
from flonnx.exchange.hashing import canonical_json, sha256_hex

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_SPEC_DIR",
    "BYZANTINE_ATTACKS",
    "FAULTS",
    "FRAMEWORKS",
    "TASKS",
    "ByzantineSpec",
    "DataSpec",
    "FederationSpec",
    "SpecError",
    "assign_frameworks",
    "builtin_specs",
    "byzantine_clients",
    "file_sha256",
    "load_spec",
    "parse_frameworks",
    "parse_retention",
    "parse_spec",
    "spec_from_json",
    "spec_from_run_config",
]

#: Where the presets that ship with flonnx live (data files of ``simulations/``, read, not imported).
BUILTIN_SPEC_DIR = Path(__file__).resolve().parents[1] / "simulations" / "specs"

TASKS = ("classification", "binary", "regression")
#: Frameworks a node can train with (the table in flonnx.exchange.frameworks).
FRAMEWORKS = tuple(_FRAMEWORK_TABLE)
#: Built-in datasets (shipped inside scikit-learn; the table is flonnx.exchange.data.builtin's) -> task.
BUILTIN_DATASETS = {name: entry.task for name, entry in _BUILTIN_TABLE.items()}
_MISSING = ("refuse", "impute-mean")
_PARTITIONS = "iid, dirichlet:ALPHA, shards:K or column:NAME"
_TRAIN_KEYS = {"local-epochs": int, "batch-size": int, "learning-rate": float}


#: Bytes of a spec file (a spec is a few KB; the bound keeps a wrong path from being read whole).
MAX_SPEC_BYTES = 1 << 20


class SpecError(FlonnxError):
    """A federation spec is invalid; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` table: a built-in dataset or a file, its columns and the partitioning."""

    source: str  # built-in name or absolute file path
    label: str = "label"
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    missing: str = "refuse"
    min_rows: int = 10
    partition: str = "iid"
    seed: int = 0  # of the evaluation hold-out and the partitions (the run's seed does not move them)
    sensitive: str | None = None  # a column to break evaluation metrics down by (not made a feature)

    @property
    def builtin(self) -> bool:
        """Whether ``source`` names a built-in dataset rather than a file."""
        return self.source in BUILTIN_DATASETS

    @property
    def partition_column(self) -> str | None:
        """``NAME`` of a ``column:NAME`` partitioning (natural ids), else ``None``."""
        kind, _, arg = self.partition.partition(":")
        return arg if kind == "column" else None


@dataclass(frozen=True)
class ByzantineSpec:
    """The ``[byzantine]`` table: a seeded share of simulated clients runs one attack (tests only).

    ``scale`` is the factor of ``scaled`` (the update times ``scale``) and ``sign-flip`` (the update
    times ``-scale``); ``sigma`` is the standard deviation of ``noise``. See ``docs/reliability.md``.
    """

    share: float
    attack: str
    seed: int = 0
    scale: float | None = None  # None: the attack's default (10 for scaled, 1 for sign-flip)
    sigma: float = 1.0

    def to_toml_dict(self) -> dict[str, Any]:
        """The table as :func:`parse_spec` accepts it."""
        out: dict[str, Any] = {"share": self.share, "attack": self.attack, "seed": self.seed,
                               "sigma": self.sigma}
        if self.scale is not None:
            out["scale"] = self.scale
        return out


@dataclass(frozen=True)
class FederationSpec:
    """A validated federation spec. Build it with :func:`parse_spec` or :func:`load_spec`."""

    name: str
    model: str
    task: str = "classification"
    description: str = ""
    data: DataSpec | None = None
    evaluate: str = "0.2"  # a held-out fraction of the simulated data, a file path, or "none"
    clients: int | None = None
    frameworks: tuple[tuple[str, int], ...] = ()
    fraction_train: float = 1.0
    min_train_nodes: int = 2
    rounds: int = 5
    seed: int = 0
    strategy: str = "fedavg"
    strategy_config: tuple[tuple[str, str], ...] = ()
    train: tuple[tuple[str, float | int], ...] = ()
    standardize: bool = True
    dropout: float = 0.0
    input_shape: tuple[int, ...] | None = None
    faults: tuple[tuple[int, str], ...] = ()  # simulation demo: partition -> injected fault
    byzantine: ByzantineSpec | None = None  # tests: a seeded share of malicious clients
    evaluate_sites: bool = True  # after training, each node evaluates the final model on its rows
    local_baseline: bool = False  # simulation: also train each client alone, for comparison
    retention: str = "all"  # [registry]: "all" updates kept, or "last:K" (see parse_retention)
    compress: bool = False  # [registry]: blobs written compressed (ids unchanged)
    source_path: str = field(default="", compare=False)  # the file it came from, for messages

    # -- views ----------------------------------------------------------------------------------
    @property
    def holdout(self) -> float | None:
        """The held-out fraction for server-side evaluation, if ``evaluate`` is one."""
        try:
            return float(self.evaluate)
        except ValueError:
            return None

    @property
    def evaluate_file(self) -> str | None:
        """The evaluation file, if ``evaluate`` names one."""
        return None if self.evaluate == "none" or self.holdout is not None else self.evaluate

    @property
    def train_settings(self) -> dict[str, float | int]:
        """Local training settings (``local-epochs``, ``batch-size``, ``learning-rate``)."""
        return dict(self.train)

    @property
    def framework_mix(self) -> str:
        """The mix as ``torch:2,jax:2``."""
        return ",".join(f"{name}:{count}" for name, count in self.frameworks)

    def files(self) -> list[str]:
        """Every file the spec names (data, evaluation, model), for hashing."""
        out = []
        if self.data is not None and not self.data.builtin:
            out.append(self.data.source)
        if self.evaluate_file:
            out.append(self.evaluate_file)
        if self.model.endswith(".onnx"):
            out.append(self.model)
        return out

    # -- serialisation --------------------------------------------------------------------------
    def to_toml_dict(self) -> dict[str, Any]:
        """The spec as the mapping :func:`parse_spec` accepts (absolute paths)."""
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "model": self.model,
            "task": self.task, "evaluate": self.evaluate, "fraction-train": self.fraction_train,
            "min-train-nodes": self.min_train_nodes, "rounds": self.rounds, "seed": self.seed,
            "strategy": self.strategy, "strategy-config": dict(self.strategy_config),
            "train": dict(self.train), "standardize": self.standardize, "dropout": self.dropout,
        }
        if self.frameworks:
            out["frameworks"] = self.framework_mix
        if self.clients is not None:
            out["clients"] = self.clients
        if self.input_shape is not None:
            out["input-shape"] = list(self.input_shape)
        if self.faults:
            out["faults"] = {str(k): v for k, v in self.faults}
        if self.byzantine is not None:
            out["byzantine"] = self.byzantine.to_toml_dict()
        out["evaluate-sites"] = self.evaluate_sites
        out["local-baseline"] = self.local_baseline
        if (self.retention, self.compress) != ("all", False):  # absent by default: older ids kept
            out["registry"] = {"retention": self.retention, "compress": self.compress}
        if self.data is not None:
            data: dict[str, Any] = {
                "source": self.data.source, "label": self.data.label,
                "categorical": list(self.data.categorical), "missing": self.data.missing,
                "min-rows": self.data.min_rows, "partition": self.data.partition,
                "seed": self.data.seed,
            }
            if self.data.features is not None:
                data["features"] = list(self.data.features)
            if self.data.classes is not None:
                data["classes"] = list(self.data.classes)
            if self.data.sensitive is not None:  # absent when unset: older specs keep their ids
                data["sensitive"] = self.data.sensitive
            out["data"] = data
        return out

    def canonical(self) -> dict[str, Any]:
        """The recorded form: every file path replaced by the hash of the file's content."""
        out = self.to_toml_dict()
        hashed = {path: {"sha256": file_sha256(path), "suffix": Path(path).suffix}
                  for path in self.files()}
        if self.data is not None and self.data.source in hashed:
            out["data"]["source"] = hashed[self.data.source]
        if self.evaluate_file:
            out["evaluate"] = hashed[self.evaluate_file]
        if self.model in hashed:
            out["model"] = hashed[self.model]
        out.pop("description")
        return out

    @property
    def id(self) -> str:
        """SHA-256 of the canonical form."""
        return sha256_hex(canonical_json(self.canonical()))

    def with_overrides(self, overrides: Mapping[str, Any]) -> FederationSpec:
        """A new spec with ``overrides`` (TOML keys; ``data.KEY`` for the data table) applied."""
        return parse_spec(_merge(self.to_toml_dict(), overrides), source=self.source_path or self.name)

    def for_strategy(self, strategy: str, config: Mapping[str, str]) -> FederationSpec:
        """This spec with one strategy and its own config (a multi-strategy spec's runs)."""
        return replace(self, strategy=strategy, strategy_config=tuple(sorted(config.items())))


def file_sha256(path: str) -> str:
    """SHA-256 of a file's content; a clear error if it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _merge(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    for key, value in overrides.items():
        if value is None:
            continue
        table, dot, sub = key.partition(".")
        if dot and table in ("data", "train", "registry"):
            current = out.get(table)
            if not isinstance(current, Mapping):
                current = {} if current is None else {"source": current}
            out[table] = {**current, sub: value}
        else:
            out[key] = value
    return out


# -- parsing -------------------------------------------------------------------------------------
_TOP_KEYS = {
    "name", "description", "model", "task", "data", "evaluate", "clients", "frameworks",
    "fraction-train", "min-train-nodes", "rounds", "seed", "strategy", "strategy-config", "train",
    "standardize", "dropout", "input-shape", "faults", "evaluate-sites", "local-baseline",
    "byzantine", "registry",
}
#: Attacks of malicious clients (``[byzantine]``; each is also a fault a node can be told to inject).
BYZANTINE_ATTACKS = ("sign-flip", "scaled", "noise", "label-flip", "copy")
#: Faults a node can be told to inject (``fault=`` in node config; ``[faults]`` in simulation), for
#: demos and tests of failure handling: ``flonnx.client.faults`` implements each.
FAULTS = ("raise", "nan", "inf", "hang", "kill", "garbage", "truncated", "nan-metric", "metric-type",
          "lineage-oversized", "lineage-malformed", "wrong-shape", "wrong-name", "wrong-dtype",
          "stale-base", "replay", *BYZANTINE_ATTACKS)
_BYZANTINE_KEYS = {"share", "attack", "seed", "scale", "sigma"}
_REGISTRY_KEYS = {"retention", "compress"}
_DATA_KEYS = {"source", "label", "features", "categorical", "classes", "missing", "min-rows",
              "partition", "seed", "sensitive"}


class _Reader:
    """Typed access to a raw mapping with errors naming ``where`` and the key."""

    def __init__(self, raw: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.raw, self.where, self.prefix = raw, where, prefix

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.where}: key '{self.prefix}{key}': {message}")

    def text(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        if key not in self.raw:
            if default is None:
                raise self.fail(key, "is required")
            return default
        value = self.raw[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value.strip()

    def integer(self, key: str, default: int | None, *, minimum: int | None = None) -> int | None:
        if key not in self.raw:
            return default
        value = self.raw[key]
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float, open_low: bool = False,
              ) -> float:
        if key not in self.raw:
            return default
        value = self.raw[key]
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        ok = (low < number if open_low else low <= number) and number <= high
        if not ok:
            bound = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
            raise self.fail(key, f"expected a number in {bound}, got {value!r}")
        return number

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.raw:
            return default
        value = self.raw[key]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def names(self, key: str) -> tuple[str, ...] | None:
        """A list of column names, as a TOML array or a comma-separated string."""
        if key not in self.raw:
            return None
        value = self.raw[key]
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise self.fail(key, f"expected a list of column names, got {value!r}")
        if len(set(items)) != len(items):
            raise self.fail(key, "lists a column twice")
        return tuple(items)


def parse_frameworks(text: str | Mapping[str, Any], where: str = "frameworks") -> tuple[tuple[str, int], ...]:
    """``"torch:2,jax:2"`` (or a TOML table ``{torch = 2}``) -> ``(("torch", 2), ("jax", 2))``."""
    items: list[tuple[str, Any]]
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in str(text).replace(" ", ",").split(","):
            if not part:
                continue
            name, sep, count = part.partition(":")
            items.append((name, count if sep else "1"))
    out: list[tuple[str, int]] = []
    for name, count in items:
        if name not in FRAMEWORKS:
            raise SpecError(f"{where}: {name!r} is not a framework flonnx trains with; "
                            f"allowed: {', '.join(FRAMEWORKS)}")
        try:
            number = int(count)
        except (TypeError, ValueError):
            number = -1
        if number < 1:
            raise SpecError(f"{where}: count for {name!r} must be a positive integer, got {count!r}")
        if any(name == seen for seen, _ in out):
            raise SpecError(f"{where}: {name!r} is listed twice")
        out.append((name, number))
    if not out:
        raise SpecError(f"{where}: expected counts like 'torch:2,jax:2,sklearn:2', got {text!r}")
    return tuple(out)


def _check_partition(text: str, reader: _Reader) -> str:
    kind, sep, arg = text.partition(":")
    ok = False
    if kind == "iid" and not sep:
        ok = True
    elif kind == "dirichlet" and sep:
        try:
            ok = float(arg) > 0 and math.isfinite(float(arg))
        except ValueError:
            ok = False
    elif kind == "shards" and sep:
        ok = arg.isdigit() and int(arg) >= 1
    elif kind == "column" and sep:
        ok = bool(arg.strip())
    if not ok:
        raise reader.fail("partition", f"{text!r} is not one of {_PARTITIONS}")
    return text


def _resolve_path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def parse_spec(raw: Mapping[str, Any], *, source: str = "spec", base_dir: Path | None = None
               ) -> FederationSpec:
    """Validate a raw mapping (parsed TOML plus overrides) into a :class:`FederationSpec`.

    Relative file paths are resolved against ``base_dir`` (the spec file's folder; default: the
    current directory).
    """
    where = Path(source).name if source.endswith(".toml") else source
    base = base_dir or Path.cwd()
    top = _Reader(raw, where)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(_TOP_KEYS))}")
    model = top.text("model")
    if model.endswith(".onnx"):
        model = _resolve_path(model, base)
    elif ":" not in model:
        from flonnx.exchange.zoo import MODELS, model_spec

        if model_spec(model) is None:
            zoo = ", ".join(sorted(MODELS))
            raise top.fail("model", f"{model!r} is not a zoo model ({zoo}, mlp-IN-…-OUT), an .onnx "
                           "file or module:callable")
    data = _parse_data(raw["data"], where, base) if "data" in raw else None
    default_task = BUILTIN_DATASETS.get(data.source, "classification") if data else "classification"
    task = top.text("task", default_task, choices=TASKS)
    evaluate = _parse_evaluate(raw.get("evaluate", 0.2 if data else "none"), top, base)
    if evaluate != "none" and data is None and not Path(evaluate).suffix:
        raise top.fail("evaluate", "a held-out fraction needs a [data] table to hold out from")
    clients = top.integer("clients", None, minimum=1)
    if data is not None and data.partition_column and clients is not None:
        raise top.fail("clients", f"{clients} conflicts with partition {data.partition!r}: the "
                       "number of clients is then the number of distinct ids in that column")
    frameworks: tuple[tuple[str, int], ...] = ()
    if "frameworks" in raw:
        value = raw["frameworks"]
        if not isinstance(value, str | Mapping):
            raise top.fail("frameworks", f"expected counts like 'torch:2,jax:2', got {value!r}")
        frameworks = parse_frameworks(value, f"{where}: key 'frameworks'")
        total = sum(n for _, n in frameworks)
        if clients is not None and total != clients:
            raise top.fail("frameworks", f"counts sum to {total} but clients is {clients}")
        if clients is None and not (data is not None and data.partition_column):
            clients = total
    if clients is None and not (data is not None and data.partition_column) and data is not None:
        raise top.fail("clients", "is required for a simulated federation (or give frameworks "
                       "counts, or partition by column:NAME)")
    if clients is not None and not frameworks:
        frameworks = (("torch", clients),)
    min_train = top.integer("min-train-nodes", min(2, clients or 2), minimum=1)
    assert min_train is not None
    if clients is not None and min_train > clients:
        raise top.fail("min-train-nodes", f"{min_train} is more than the {clients} clients; "
                       f"allowed: 1 to {clients}")
    strategy = top.text("strategy", "fedavg")
    strategy_config = raw.get("strategy-config", {})
    if isinstance(strategy_config, str):
        strategy_config = _parse_pairs(strategy_config, top)
    if not isinstance(strategy_config, Mapping):
        raise top.fail("strategy-config", f"expected a table of key = value, got {strategy_config!r}")
    train = raw.get("train", {})
    if not isinstance(train, Mapping):
        raise top.fail("train", f"expected a table, got {train!r}")
    train_reader = _Reader(train, where, "train.")
    bad = sorted(set(train) - set(_TRAIN_KEYS))
    if bad:
        raise train_reader.fail(bad[0], f"unknown; known: {', '.join(_TRAIN_KEYS)}")
    train_values: dict[str, float | int] = {"local-epochs": 5, "batch-size": 32, "learning-rate": 0.01}
    for key, kind in _TRAIN_KEYS.items():
        if kind is int:
            value = train_reader.integer(key, None, minimum=1)
            if value is not None:
                train_values[key] = value
        elif key in train:
            train_values[key] = train_reader.number(key, 0.01, low=0.0, high=1e6, open_low=True)
    input_shape = None
    if "input-shape" in raw:
        shape = raw["input-shape"]
        if not (isinstance(shape, list) and shape and all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise top.fail("input-shape", f"expected a list of positive integers (one example, no "
                           f"batch dimension), got {shape!r}")
        input_shape = tuple(shape)
    faults = raw.get("faults", {})
    if not isinstance(faults, Mapping) or not all(
            str(k).isdigit() and v in FAULTS for k, v in faults.items()):
        raise top.fail("faults", f"expected a table of partition id = one of {', '.join(FAULTS)}, "
                       f"got {faults!r}")
    byzantine = _parse_byzantine(raw["byzantine"], where) if "byzantine" in raw else None
    retention, compress = _parse_registry(raw.get("registry", {}), where)
    name = top.text("name", Path(source).stem if source.endswith(".toml") else "custom")
    return FederationSpec(
        name=name, model=model, task=task, description=str(raw.get("description", "")),
        data=data, evaluate=evaluate, clients=clients, frameworks=frameworks,
        fraction_train=top.number("fraction-train", 1.0, low=0.0, high=1.0, open_low=True),
        min_train_nodes=min_train, rounds=top.integer("rounds", 5, minimum=1) or 5,
        seed=top.integer("seed", 0, minimum=0) or 0, strategy=strategy,
        strategy_config=tuple(sorted((str(k), str(v)) for k, v in strategy_config.items())),
        train=tuple(sorted(train_values.items())),
        standardize=top.flag("standardize", True),
        dropout=top.number("dropout", 0.0, low=0.0, high=0.95),
        input_shape=input_shape, source_path=source,
        faults=tuple(sorted((int(k), str(v)) for k, v in faults.items())), byzantine=byzantine,
        evaluate_sites=top.flag("evaluate-sites", True),
        local_baseline=top.flag("local-baseline", False),
        retention=retention, compress=compress,
    )


def parse_retention(text: str) -> int | None:
    """``"all"`` -> ``None``; ``"last:K"`` -> ``K``, the rounds whose client updates keep their blobs.

    Raises:
        ValueError: anything else, naming the allowed forms.
    """
    kind, colon, count = str(text).strip().partition(":")
    if kind == "all" and not colon:
        return None
    if kind == "last" and count.isdigit():
        return int(count)
    raise ValueError(f"{text!r} is not 'all' or 'last:K' (K a whole number: keep the updates of "
                     "the last K rounds)")


def _parse_registry(raw: Any, where: str) -> tuple[str, bool]:
    """The ``[registry]`` table: (retention, compress)."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: key 'registry': expected a table (retention, compress), got {raw!r}")
    unknown = sorted(set(raw) - _REGISTRY_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join('registry.' + k for k in unknown)}; "
                        f"known: {', '.join(sorted(_REGISTRY_KEYS))}")
    reader = _Reader(raw, where, "registry.")
    try:
        kept = parse_retention(raw.get("retention", "all"))
    except ValueError as exc:
        raise reader.fail("retention", str(exc)) from None
    return "all" if kept is None else f"last:{kept}", reader.flag("compress", False)


def _parse_byzantine(raw: Any, where: str) -> ByzantineSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: key 'byzantine': expected a table (share, attack, seed, scale, "
                        f"sigma), got {raw!r}")
    unknown = sorted(set(raw) - _BYZANTINE_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join('byzantine.' + k for k in unknown)}; "
                        f"known: {', '.join(sorted(_BYZANTINE_KEYS))}")
    reader = _Reader(raw, where, "byzantine.")
    scale = reader.number("scale", math.nan, low=0.0, high=1e6, open_low=True) if "scale" in raw else None
    return ByzantineSpec(
        share=reader.number("share", 0.0, low=0.0, high=0.5),
        attack=reader.text("attack", choices=BYZANTINE_ATTACKS),
        seed=reader.integer("seed", 0, minimum=0) or 0, scale=scale,
        sigma=reader.number("sigma", 1.0, low=0.0, high=1e6, open_low=True),
    )


def byzantine_clients(spec: FederationSpec, num_clients: int) -> dict[int, str]:
    """Partition id -> attack of the malicious clients.

    ``round(share * num_clients)`` of them, a choice seeded by ``[byzantine] seed`` alone (so a
    clean and an attacked run share everything else).
    """
    if spec.byzantine is None:
        return {}
    from flonnx.exchange.seeds import derive_seed

    count = round(spec.byzantine.share * num_clients)
    rng = np.random.default_rng(derive_seed(spec.byzantine.seed, "byzantine"))
    chosen = rng.choice(num_clients, size=count, replace=False).tolist() if count else []
    return {int(p): spec.byzantine.attack for p in sorted(chosen)}


def _parse_pairs(text: str, reader: _Reader) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise reader.fail("strategy-config", f"item {item!r} is not key=value")
        pairs[key] = value
    return pairs


def _parse_evaluate(value: Any, reader: _Reader, base: Path) -> str:
    if isinstance(value, bool):
        raise reader.fail("evaluate", f"expected a fraction, a file or 'none', got {value!r}")
    if isinstance(value, int | float):
        if not 0.0 < float(value) < 1.0:
            raise reader.fail("evaluate", f"a held-out fraction must be in (0, 1), got {value}")
        return repr(float(value))
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text == "none":
            return text
        try:
            return _parse_evaluate(float(text), reader, base)
        except ValueError:
            return _resolve_path(text, base)
    raise reader.fail("evaluate", f"expected a fraction, a file or 'none', got {value!r}")


def _parse_data(raw: Any, where: str, base: Path) -> DataSpec:
    if isinstance(raw, str):
        raw = {"source": raw}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: key 'data': expected a table, got {raw!r}")
    reader = _Reader(raw, where, "data.")
    unknown = sorted(set(raw) - _DATA_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join('data.' + k for k in unknown)}; "
                        f"known: {', '.join(sorted(_DATA_KEYS))}")
    source = reader.text("source")
    if source not in BUILTIN_DATASETS:
        if Path(source).suffix.lower() not in (".csv", ".parquet", ".npz"):
            raise reader.fail("source", f"{source!r} is neither a built-in dataset "
                              f"({', '.join(BUILTIN_DATASETS)}) nor a .csv, .parquet or .npz file")
        source = _resolve_path(source, base)
        if not Path(source).is_file():
            raise reader.fail("source", f"data file {source} does not exist")
    default_label = _BUILTIN_TABLE[source].label if source in _BUILTIN_TABLE else "target"
    classes = reader.names("classes")
    label = reader.text("label", default_label)
    sensitive = reader.text("sensitive") if "sensitive" in raw else None
    if sensitive == label:
        raise reader.fail("sensitive", f"{sensitive!r} is the label column; name another column to "
                          "break the metrics down by")
    return DataSpec(
        source=source, label=label, sensitive=sensitive,
        features=reader.names("features"), categorical=reader.names("categorical") or (),
        classes=classes, missing=reader.text("missing", "refuse", choices=_MISSING),
        min_rows=reader.integer("min-rows", 10, minimum=1) or 10,
        partition=_check_partition(reader.text("partition", "iid"), reader),
        seed=reader.integer("seed", 0, minimum=0) or 0,
    )


def load_spec(ref: str | Path, overrides: Mapping[str, Any] | None = None) -> FederationSpec:
    """A spec from a TOML file path or the name of a built-in preset, with ``overrides`` applied."""
    path = Path(ref)
    if path.suffix != ".toml":
        candidate = BUILTIN_SPEC_DIR / f"{ref}.toml"
        if not candidate.is_file():
            names = ", ".join(builtin_specs()) or "none"
            raise SpecError(f"no spec file {ref!r} and no built-in scenario of that name "
                            f"(built-in: {names})")
        path = candidate
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file {path} is {path.stat().st_size} bytes; the limit is {MAX_SPEC_BYTES}")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path.name} is not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise SpecError(f"{path.name} is not valid TOML: values nested too deeply") from None
    return parse_spec(_merge(raw, overrides or {}), source=str(path), base_dir=path.parent)


def spec_from_json(data: Mapping[str, Any]) -> FederationSpec:
    """The inverse of :meth:`FederationSpec.to_toml_dict` (as stored with a run)."""
    return parse_spec(data, source=str(data.get("name", "stored spec")))


def builtin_specs() -> dict[str, str]:
    """Built-in preset name -> description."""
    out = {}
    for path in sorted(BUILTIN_SPEC_DIR.glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        out[path.stem] = str(raw.get("description", ""))
    return out


def assign_frameworks(spec: FederationSpec, num_clients: int) -> list[str]:
    """Framework per partition: the spec's counts, shuffled with a seed derived from the run seed.

    The shuffle keeps label skew from lining up with one framework. With ``column:NAME``
    partitioning the counts may not be known in advance: they are scaled to ``num_clients``.
    """
    from flonnx.exchange.seeds import derive_seed

    names = [name for name, count in spec.frameworks for _ in range(count)]
    if len(names) != num_clients:
        weights = [count for _, count in spec.frameworks] or [1]
        frameworks = [name for name, _ in spec.frameworks] or ["torch"]
        names = [frameworks[i * sum(weights) // num_clients % len(frameworks)]
                 for i in range(num_clients)]
    order = np.random.default_rng(derive_seed(spec.seed, "frameworks")).permutation(len(names))
    return [names[i] for i in order]


#: Flower run-config keys that override a spec key (``flwr run . --run-config "seed=3"``).
RUN_CONFIG_KEYS = {
    "num-server-rounds": "rounds", "seed": "seed", "strategy": "strategy",
    "strategy-config": "strategy-config", "fraction-train": "fraction-train",
    "min-train-nodes": "min-train-nodes", "clients": "clients", "frameworks": "frameworks",
    "model": "model", "task": "task", "evaluate": "evaluate", "standardize": "standardize",
    "dropout": "dropout", "data": "data.source", "label": "data.label",
    "features": "data.features", "partition": "data.partition", "local-epochs": "train.local-epochs",
    "batch-size": "train.batch-size", "learning-rate": "train.learning-rate",
}
DEFAULT_SPEC = "digits-mixed"


def spec_from_run_config(config: Mapping[str, Any]) -> FederationSpec:
    """The spec a Flower run config names (``spec``: a preset or a file) with its overrides.

    A key set to ``""`` is not given (pyproject.toml declares every key that way, since ``flwr run``
    accepts only declared keys). ``spec = "none"`` starts from nothing, so the overrides must name
    at least a model (and data for a simulation).
    """
    overrides = {RUN_CONFIG_KEYS[k]: v for k, v in config.items() if k in RUN_CONFIG_KEYS and v != ""}
    ref = str(config.get("spec") or DEFAULT_SPEC).strip()
    if ref == "none":
        return parse_spec(_merge({}, overrides), source="command line")
    return load_spec(ref, overrides)
