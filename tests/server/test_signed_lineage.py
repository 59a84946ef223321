"""Signed lineage end to end: a federation signs every version it commits, ``flonnx lineage verify``
names every version whose signature is missing, bad or by another key, and ``flonnx verify-model``
checks an exported file against the coordinator's public key.

Federations run in-process on a :class:`~tests.server.local_grid.LocalGrid` (no Ray), with
standardised features, so the export's graph has the preprocessing wrapped around it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
from sqlalchemy import create_engine, delete, select, update
from typer.testing import CliRunner

from flonnx.exchange import _schema as schema
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.export import export_version, write_model
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.exchange.signed_export import verify_model_file
from flonnx.exchange.signing import PublicKey, load_public_key, write_key_pair
from tests.server.conftest import run_local

CONFIG = {"num-server-rounds": 2, "frameworks": "sklearn:6", "standardize": "true"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same federation signed and unsigned, and a key pair that signed nothing."""
    tmp = tmp_path_factory.mktemp("signed")
    private, public, _ = write_key_pair(tmp / "keys")
    _, other, _ = write_key_pair(tmp / "other")
    signed = run_local(tmp / "signed", **CONFIG, **{"signing-key": str(private)})
    unsigned = run_local(tmp / "unsigned", **CONFIG)
    return {"tmp": tmp, "private": private, "public": public, "other": other, "signed": signed,
            "unsigned": unsigned, "key": load_public_key(public)}


def _ids(registry: Path, run_id: str) -> list[str]:
    with Registry(registry, create=False) as reg:
        return [v.version_id for v in reg.versions(run_id)]


def _copy(runs: dict[str, Any], tmp_path: Path) -> Path:
    shutil.copytree(runs["tmp"] / "signed", tmp_path / "copy")
    return tmp_path / "copy"


def _verify(registry: Path, run_id: str, key: PublicKey | None = None) -> list[str]:
    with Registry(registry, create=False) as reg:
        return reg.verify(run_id, key)[1]


def _cli(*args: str) -> Any:
    from flonnx.cli import app

    return CliRunner().invoke(app, list(args))


# -- the registry -----------------------------------------------------------------------------------
def test_signing_leaves_every_version_id_as_it_was(runs: dict[str, Any]) -> None:
    signed = _ids(runs["tmp"] / "signed", runs["signed"])
    unsigned = _ids(runs["tmp"] / "unsigned", runs["unsigned"])

    with Registry(runs["tmp"] / "signed", create=False) as reg:
        signatures = [reg.signatures(v) for v in signed]
        recorded = reg.run(runs["signed"]).config["signing_key"]
    with Registry(runs["tmp"] / "unsigned", create=False) as reg:
        none = [reg.signatures(v) for v in unsigned]

    assert signed == unsigned and len(signed) > 10
    assert all(set(s) == {runs["key"].fingerprint} for s in signatures)
    assert none == [{}] * len(unsigned)
    assert recorded == {"algorithm": "ed25519", "public_key": runs["key"].hex,
                        "fingerprint": runs["key"].fingerprint}


def test_verify_passes_with_the_right_key_and_says_which_key_without_one(runs: dict[str, Any]) -> None:
    registry = str(runs["tmp"] / "signed")

    keyed = _cli("lineage", "verify", "--registry", registry, "--key", str(runs["public"]))
    recorded = _cli("lineage", "verify", "--registry", registry)
    unsigned = _cli("lineage", "verify", "--registry", str(runs["tmp"] / "unsigned"))

    assert _verify(runs["tmp"] / "signed", runs["signed"], runs["key"]) == []
    assert keyed.exit_code == 0 and f"with the given key {runs['key'].fingerprint[:16]}" in keyed.output
    assert recorded.exit_code == 0
    assert (f"run {runs['signed']}: signatures checked against the run's own recorded key "
            f"{runs['key'].fingerprint[:16]}") in " ".join(recorded.output.split())
    assert unsigned.exit_code == 0 and f"run {runs['unsigned']}: unsigned" in unsigned.output


def test_verify_with_another_key_names_every_version(runs: dict[str, Any]) -> None:
    other = load_public_key(runs["other"])

    problems = _verify(runs["tmp"] / "signed", runs["signed"], other)
    result = _cli("lineage", "verify", "--registry", str(runs["tmp"] / "signed"),
                  "--key", str(runs["other"]))

    ids = _ids(runs["tmp"] / "signed", runs["signed"])
    assert problems[0] == (f"run {runs['signed']}: recorded signing key {runs['key'].fingerprint[:16]}, "
                           f"not the given key {other.fingerprint[:16]}")
    assert len(problems) == 1 + len(ids)
    for version_id, problem in zip(ids, problems[1:], strict=True):
        assert problem.startswith(f"run {runs['signed']} version {version_id[:12]} (")
        assert problem.endswith(f"signed by another key ({runs['key'].fingerprint[:16]}), not by "
                                f"{other.fingerprint[:16]}")
    assert result.exit_code == 1


def test_verify_names_the_version_whose_signature_row_was_changed(
    runs: dict[str, Any], tmp_path: Path,
) -> None:
    registry = _copy(runs, tmp_path)
    victim = _ids(registry, runs["signed"])[3]
    s = schema.version_signatures
    engine = create_engine(f"sqlite:///{registry / 'registry.db'}")
    with engine.begin() as db:
        signature = db.execute(select(s.c.signature).where(s.c.version_id == victim)).scalar_one()
        flipped = ("1" if signature[0] != "1" else "2") + signature[1:]
        db.execute(update(s).where(s.c.version_id == victim).values(signature=flipped))
    engine.dispose()

    problems = _verify(registry, runs["signed"])

    assert len(problems) == 1
    assert problems[0].startswith(f"run {runs['signed']} version {victim[:12]} (")
    assert problems[0].endswith(f"bad signature: it does not verify with key {runs['key'].fingerprint[:16]}")


def test_verify_names_the_version_whose_signature_is_missing(runs: dict[str, Any], tmp_path: Path) -> None:
    registry = _copy(runs, tmp_path)
    victim = _ids(registry, runs["signed"])[-1]
    engine = create_engine(f"sqlite:///{registry / 'registry.db'}")
    with engine.begin() as db:
        db.execute(delete(schema.version_signatures).where(
            schema.version_signatures.c.version_id == victim))
    engine.dispose()

    problems = _verify(registry, runs["signed"], runs["key"])
    result = _cli("lineage", "verify", "--registry", str(registry), "--key", str(runs["public"]))

    assert problems == [f"run {runs['signed']} version {victim[:12]} (aggregate, round 2): missing "
                        f"signature by key {runs['key'].fingerprint[:16]}"]
    assert result.exit_code == 1 and victim[:12] in result.output


def test_a_resume_goes_on_with_the_key_the_run_started_with(runs: dict[str, Any], tmp_path: Path) -> None:
    registry = _copy(runs, tmp_path)
    more = {**CONFIG, "num-server-rounds": 3, "resume": runs["signed"]}

    with pytest.raises(FlonnxError, match=r"is signed \(key [0-9a-f]{16}\); resume it with --signing-key"):
        run_local(registry, **more)
    with pytest.raises(FlonnxError, match="not by the given --signing-key"):
        run_local(registry, **more, **{"signing-key": str(write_key_pair(tmp_path / "k")[0])})
    run_local(registry, **more, **{"signing-key": str(runs["private"])})

    with Registry(registry, create=False) as reg:
        assert max(reg.heads(runs["signed"])) == 3
    assert _verify(registry, runs["signed"], runs["key"]) == []


# -- exported files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(runs: dict[str, Any]) -> dict[str, Any]:
    with Registry(runs["tmp"] / "signed", create=False) as reg:
        head = reg.heads(runs["signed"])[2]
        model = export_version(reg, head)
        chain = [reg.heads(runs["signed"])[r] for r in (2, 1, 0)]
        initial_signature = reg.signatures(chain[-1])[runs["key"].fingerprint]
        assert reg.record(chain[-1]).kind is VersionKind.INITIAL
    path = write_model(model, runs["tmp"] / "exported" / "model.onnx")
    return {"path": path, "model": model, "head": head, "chain": chain,
            "initial_signature": initial_signature}


def _tampered(exported: dict[str, Any], tmp_path: Path, change: Any) -> Path:
    model = onnx.ModelProto()
    model.CopyFrom(exported["model"])
    change(model)
    path = tmp_path / "tampered.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _set(model: onnx.ModelProto, key: str, value: str) -> None:
    next(p for p in model.metadata_props if p.key == key).value = value


def test_an_export_carries_its_signature_and_chain_and_verifies(
    runs: dict[str, Any], exported: dict[str, Any],
) -> None:
    card = {p.key: p.value for p in exported["model"].metadata_props}

    result = _cli("verify-model", str(exported["path"]), "--key", str(runs["public"]))

    assert card["flonnx.lineage_chain"] == ",".join(exported["chain"])
    assert card["flonnx.signing_key"] == runs["key"].fingerprint
    assert runs["key"].verifies(exported["head"], card["flonnx.signature"])
    assert any(t.name == "flonnx_pre/mean" for t in exported["model"].graph.initializer)
    assert verify_model_file(exported["path"], runs["key"]) == []
    assert result.exit_code == 0 and result.output.startswith("verified: ")


def test_verify_model_finds_a_flipped_weight_byte(
    runs: dict[str, Any], exported: dict[str, Any], tmp_path: Path,
) -> None:
    def flip(model: onnx.ModelProto) -> None:
        tensor = next(t for t in model.graph.initializer if t.name == "fc1.weight")
        data = bytearray(tensor.raw_data)
        data[5] ^= 0x01
        tensor.raw_data = bytes(data)

    path = _tampered(exported, tmp_path, flip)
    result = _cli("verify-model", str(path), "--key", str(runs["public"]))

    problems = verify_model_file(path, runs["key"])
    assert len(problems) == 1 and problems[0].startswith("the file's weights re-hash to ")
    assert result.exit_code == 1 and "verified" not in result.output


def test_verify_model_finds_a_changed_preprocessing_constant(
    runs: dict[str, Any], exported: dict[str, Any], tmp_path: Path,
) -> None:
    def shift(model: onnx.ModelProto) -> None:
        tensor = next(t for t in model.graph.initializer if t.name == "flonnx_pre/mean")
        data = bytearray(tensor.raw_data)
        data[0] ^= 0x01
        tensor.raw_data = bytes(data)

    problems = verify_model_file(_tampered(exported, tmp_path, shift), runs["key"])

    assert len(problems) == 1 and problems[0].startswith("the file's graph is not what definition ")


def test_verify_model_finds_a_swapped_signature(
    runs: dict[str, Any], exported: dict[str, Any], tmp_path: Path,
) -> None:
    path = _tampered(exported, tmp_path,
                     lambda m: _set(m, "flonnx.signature", exported["initial_signature"]))

    problems = verify_model_file(path, runs["key"])

    assert problems == [f"version {exported['head'][:12]}: bad signature: it does not verify with key "
                        f"{runs['key'].fingerprint[:16]}"]


def test_verify_model_refuses_the_wrong_key(runs: dict[str, Any], exported: dict[str, Any]) -> None:
    other = load_public_key(runs["other"])

    problems = verify_model_file(exported["path"], other)
    result = _cli("verify-model", str(exported["path"]), "--key", str(runs["other"]))

    assert problems == [f"version {exported['head'][:12]} is signed by key "
                        f"{runs['key'].fingerprint[:16]}, not by the given key {other.fingerprint[:16]}"]
    assert result.exit_code == 1


def test_verify_model_finds_a_record_that_is_not_the_signed_one(
    runs: dict[str, Any], exported: dict[str, Any], tmp_path: Path,
) -> None:
    def relabel(model: onnx.ModelProto) -> None:
        lineage = next(p for p in model.metadata_props if p.key == "flonnx.lineage")
        lineage.value = lineage.value.replace('"round":2', '"round":7')

    problems = verify_model_file(_tampered(exported, tmp_path, relabel), runs["key"])

    assert len(problems) == 1 and problems[0].startswith("the embedded record re-hashes to ")
