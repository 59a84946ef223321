"""Sites stay in control: a node refuses, before any training, what its policy file does not allow.

One real in-process federation (:class:`Federation` on a :class:`LocalGrid`): every node names its
own CSV and, most of them, a policy file in node config, as a hospital's SuperNode does. Three
nodes are allowed to train (one approves the announced definition by its full id with every other
rule at its limit, one by a 12-character prefix, one has no policy); every other node's policy
refuses for one reason, or its policy file is unusable. Each refusal must be recorded, at the
handshake and in every round, with its exact one-line reason, while the allowed nodes complete
every round.

The refusing nodes also carry ``fault="raise"``: a trainer that crashes the moment it is asked to
train. Their recorded reason being the policy's proves the policy is enforced before training.

The model runs its ``Relu`` only inside a model-local function (a nested graph), so the operator
rule is exercised on a subgraph; standardisation is on, so the definition that is trained carries
the federation's preprocessing constants and differs from the one announced at the handshake,
which is the one the sites approve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from flonnx.client.app import app as client_app
from flonnx.client.bundle import directory_digest
from flonnx.exchange.lineage import VersionKind, VersionRecord, flonnx_version
from flonnx.exchange.preprocess import METADATA_KEY
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation, initial_model
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid
from tests.tiny_models import function_mlp

ROUNDS = 2
ROWS = 40
FEATURES = ("age", "bmi", "chol", "bp")
LABEL = "diagnosis"
PARAMETERS = 4 * 8 + 8 + 8 * 2 + 2  # function_mlp(4, 8, 2)
ALLOWED = ("approves-by-id", "approves-by-prefix", "no-policy")


def _write_rows(path: Path, seed: int, n: int = ROWS) -> str:
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES))).round(3)
    lines = [",".join((*FEATURES, LABEL))]
    lines += [",".join([*map(str, row), str(int(row[0] + row[1] > 0))]) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@dataclass(frozen=True)
class Case:
    """A refusing node: its policy file's text (None: no file at all) and its exact reason."""

    client: str
    policy: str | None
    reason: Callable[[Path, str], str]  # (policy path, announced definition id) -> reason


CASES = [
    Case("unapproved", f'definitions = ["{"0" * 64}", "{"1" * 12}"]\n',
         lambda p, d: f"site policy: definition {d[:12]} is not approved (policy {p} approves 2 "
                      "definitions)"),
    Case("too-many-parameters", f"max-parameters = {PARAMETERS - 1}\n",
         lambda p, d: f"site policy: {PARAMETERS} parameters exceed max-parameters {PARAMETERS - 1}"),
    Case("operator-in-a-function", 'operators = ["Gemm"]\n',
         lambda p, d: "site policy: operator Relu is not allowed"),
    Case("too-few-rows", f"min-rows = {ROWS + 1}\n",
         lambda p, d: f"site policy: {ROWS} rows are fewer than min-rows {ROWS + 1}"),
    Case("unknown-key", "max-params = 10\n",
         lambda p, d: f"policy {p}: unknown key 'max-params'; the keys are definitions, "
                      "max-parameters, operators, min-rows, share"),
    Case("wrong-type", 'min-rows = "ten"\n',
         lambda p, d: f"policy {p}: key 'min-rows': expected a positive integer, got 'ten'"),
    Case("unknown-share", 'share = ["patient-ids"]\n',
         lambda p, d: f"policy {p}: key 'share': expected a list of facts that may leave the site, "
                      "each one of label-histogram, group-metrics, got ['patient-ids']"),
    Case("not-toml", "min-rows = \n",
         lambda p, d: f"policy {p} is not valid TOML: Invalid value (at line 1, column 12)"),
    Case("missing-file", None, lambda p, d: f"policy {p} does not exist"),
]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str
    records: list[VersionRecord]
    reasons: dict[str, str]
    announced: str  # the definition id announced at the handshake
    trained: str  # the definition id the rounds trained
    trained_metadata: dict[str, str]
    bundle: str
    site_evaluation: dict[str, Any]

    def rejected(self, client: str) -> dict[int, str]:
        return {r.round: r.reason for r in self.records
                if r.kind is VersionKind.REJECTED and r.client == client}


def _fake_bundle(home: Path) -> Path:
    bundle = home / "apps" / "flonnx.flonnx.0.1.0.0123abcd"
    bundle.mkdir(parents=True)
    (bundle / "pyproject.toml").write_text('[project]\nname = "flonnx"\n')
    (bundle / "README.md").write_text("flonnx\n")
    return bundle


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    folder = tmp_path_factory.mktemp("site-policy")
    model_path = folder / "model.onnx"
    onnx.save(function_mlp(), model_path)
    spec = parse_spec({"model": str(model_path), "task": "binary", "clients": 3 + len(CASES),
                       "evaluate": "none", "rounds": ROUNDS, "min-train-nodes": 3,
                       "standardize": True})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=3 + len(CASES))
    announced = initial_model(settings)[0].id

    def node(client: str, seed: int, **config: str) -> dict[str, Any]:
        data = _write_rows(folder / f"{client}.csv", seed)
        return {"client-id": client, "framework": "torch", "data": data, "label": LABEL, **config}

    def policy(client: str, text: str | None) -> str:
        path = folder / f"{client}.toml"
        if text is not None:
            path.write_text(text)
        return str(path)

    nodes = [
        node("approves-by-id", 1, policy=policy("approves-by-id", (
            f'definitions = ["{announced}"]\nmax-parameters = {PARAMETERS}\n'
            f'operators = ["Gemm", "Relu"]\nmin-rows = {ROWS}\n'))),
        node("approves-by-prefix", 2, policy=policy("approves-by-prefix", (
            f'definitions = ["{announced[:12]}"]\nshare = ["label-histogram", "group-metrics"]\n'))),
        node("no-policy", 3),
    ]
    reasons = {}
    for i, case in enumerate(CASES):
        path = policy(case.client, case.policy)
        nodes.append(node(case.client, 10 + i, policy=path, fault="raise"))
        reasons[case.client] = case.reason(Path(path), announced)
    home = folder / "flwr-home"
    bundle = _fake_bundle(home)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLWR_HOME", str(home))
        patch.syspath_prepend(str(bundle))
        grid = LocalGrid(client_app, len(nodes), node_configs=nodes)
        run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]

    with Registry(folder / "registry") as reg:
        records = [v.record for v in reg.versions(run_id)]
        status = reg.run(run_id).status
        site_evaluation = reg.run(run_id).config["site_evaluation"]
        trained = next(r.definition_id for r in records if r.kind is VersionKind.AGGREGATE)
        metadata = reg.get_definition(trained).metadata
    yield Outcome(run_id, status, records, reasons, announced, trained, metadata,
                  directory_digest(bundle), site_evaluation)


@pytest.mark.parametrize("case", CASES, ids=[c.client for c in CASES])
def test_a_node_refuses_what_its_policy_does_not_allow_at_the_handshake_and_every_round(
    federation: Outcome, case: Case,
) -> None:
    reason = federation.reasons[case.client]

    rejected = federation.rejected(case.client)

    # its trainer would crash if asked to train: the policy's reason proves it never was
    assert rejected == {0: f"refused at the handshake: {reason}",
                        **{rnd: f"client refused to train: {reason}" for rnd in range(1, ROUNDS + 1)}}
    assert "\n" not in reason


def test_the_allowed_nodes_complete_every_round(federation: Outcome) -> None:
    by_id = {r.version_id: r for r in federation.records}
    aggregates = [r for r in federation.records if r.kind is VersionKind.AGGREGATE]

    assert federation.status == "completed"
    assert [a.round for a in aggregates] == list(range(1, ROUNDS + 1))
    for aggregate in aggregates:
        parents = [by_id[p] for p in aggregate.parents]
        assert sorted(p.client for p in parents) == sorted(ALLOWED)
        assert {p.kind for p in parents} == {VersionKind.CLIENT_UPDATE}
    assert not [r for r in federation.records if r.kind is VersionKind.REJECTED and r.client in ALLOWED]


def test_sites_approve_the_announced_definition_though_the_trained_one_adds_preprocessing(
    federation: Outcome,
) -> None:
    # the approving nodes trained every round (above) a definition whose id they never listed
    assert federation.trained != federation.announced
    assert METADATA_KEY in federation.trained_metadata


def test_only_the_allowed_nodes_evaluate_the_final_model_on_their_rows(federation: Outcome) -> None:
    assert sorted(federation.site_evaluation["sites"]) == sorted(ALLOWED)


def test_every_update_records_the_node_s_flonnx_version_and_app_bundle(federation: Outcome) -> None:
    updates = [r for r in federation.records if r.kind is VersionKind.CLIENT_UPDATE]

    assert len(updates) == len(ALLOWED) * ROUNDS
    for update in updates:
        assert update.environment["flonnx"] == flonnx_version()
        assert update.environment["bundle"] == federation.bundle
    assert len(federation.bundle) == 64
