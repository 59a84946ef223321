"""The reply checker, rule by rule: what :func:`check_reply` accepts, what it refuses and in which words.

Every client reply passes :mod:`flonnx.server.replies` before it can reach a strategy. These tests
build replies by hand (a tiny ONNX model, no torch, no Ray, no server) so that each rule, each bound
at its edge and each reason text is checked in a fraction of a second: they run once per mutant of
``server/replies.py`` (``python -m mutation``, issue #11).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate, LineageError
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.lineage import flonnx_version
from flonnx.server import replies
from flonnx.server.replies import (
    ClientInfo,
    Rejection,
    Update,
    check_protocol,
    check_reply,
    describe_error,
    failure_line,
    one_line,
    parse_environment,
)
from tests.flower_identity import flower_identity  # noqa: F401 - autouse here
from tests.tiny_models import gemm_mlp

BASE = "b" * 20 + "c" * 44  # a version id: the reasons quote its first 12 characters
SEED = 1_000_001  # above the small integers Python caches: an ``is`` comparison would differ
CLIENT = ClientInfo(7, "site-a", "numpy", "2", 10, {"numpy": "2.4.6"})


@pytest.fixture(scope="module")
def model() -> tuple[Definition, dict[str, np.ndarray]]:
    return gemm_mlp(4, 8, 3)


def _train() -> Message:
    return Message(RecordDict({wire.CONFIG: ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train")


def _fresh(text: str) -> str:
    """The same text, another object: the checker must compare values, not identities."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


def _lineage(weights: dict[str, np.ndarray], **fields: Any) -> dict[str, Any]:
    return {wire.REPLY_BASE_VERSION: _fresh(BASE), wire.REPLY_CLIENT: _fresh("site-a"),
            wire.REPLY_FRAMEWORK: "numpy", wire.REPLY_FRAMEWORK_VERSION: "2.4.6",
            wire.REPLY_WEIGHTS_ID: weights_id(weights),
            wire.REPLY_SEED: SEED, **fields}


def _reply(weights: dict[str, np.ndarray], *, metrics: dict[str, Any] | None = None,
           lineage: dict[str, Any] | None = None, drop: str | None = None) -> Message:
    content = RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
        wire.METRICS: MetricRecord({wire.REPLY_NUM_EXAMPLES: 10, "train-loss": 0.5} if metrics is None
                                   else metrics),
        wire.LINEAGE: ConfigRecord(_lineage(weights) if lineage is None else lineage),
    })
    if drop is not None:
        del content[drop]
    return Message(content, reply_to=_train())


def _check(reply: Message, definition: Definition, *, seed: int | None = None,
           client: ClientInfo = CLIENT) -> Update | Rejection:
    # a seed built at run time: the same value as SEED, another object
    return check_reply(reply, client=client, definition=definition, base_version=_fresh(BASE),
                       seed=int(str(SEED)) if seed is None else seed)


def _accepted(reply: Message, definition: Definition, **kwargs: Any) -> Update:
    checked = _check(reply, definition, **kwargs)
    assert isinstance(checked, Update), checked
    return checked


def _rejected(reply: Message, definition: Definition, **kwargs: Any) -> str:
    checked = _check(reply, definition, **kwargs)
    assert isinstance(checked, Rejection), checked
    assert (checked.client, checked.node_id) == ("site-a", 7)
    return checked.reason


def _refusal(reason: str | None, metrics: dict[str, Any] | None = None) -> Message:
    config = ConfigRecord({} if reason is None else {wire.REFUSAL_REASON: reason})
    content = RecordDict({wire.REFUSAL: config})
    if metrics is not None:
        content[wire.METRICS] = MetricRecord(metrics)
    return Message(content, reply_to=_train())


# -- a valid update -----------------------------------------------------------------------------

def test_a_valid_reply_becomes_an_update_carrying_what_was_checked(model: Any) -> None:
    definition, weights = model
    reply = _reply(weights, metrics={_fresh(wire.REPLY_NUM_EXAMPLES): 10, "train-loss": 0.5, "epochs": 2})

    update = _accepted(reply, definition)

    assert (update.client, update.node_id, update.framework, update.framework_version) == (
        "site-a", 7, "numpy", "2.4.6")
    assert update.weights_id == weights_id(weights)
    assert update.num_examples == 10 and type(update.num_examples) is int
    assert update.metrics == {"train-loss": 0.5, "epochs": 2.0}
    assert update.seed == SEED
    assert update.environment == {"numpy": "2.4.6"}
    assert update.message is reply
    assert sorted(update.weights) == sorted(weights)
    for name, array in update.weights.items():
        np.testing.assert_array_equal(array, weights[name])


@pytest.mark.parametrize("buffer", [bytes, bytearray])
def test_the_weights_of_an_update_are_read_only(model: Any, buffer: type) -> None:
    # their id was computed here and is trusted when the update is stored, whatever buffer the
    # message's payload is (a writable bytearray decodes to writable arrays)
    definition, weights = model
    reply = _reply(weights)
    for payload in reply.content.array_records[wire.ARRAYS].values():
        payload.data = buffer(payload.data)

    update = _accepted(reply, definition)

    for array in update.weights.values():
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0


def test_the_message_stays_out_of_an_update_s_repr(model: Any) -> None:
    definition, weights = model

    text = repr(_accepted(_reply(weights), definition))

    assert "client='site-a'" in text and "message=" not in text


# -- failures and refusals ----------------------------------------------------------------------

def test_a_failed_client_is_rejected_with_its_exception_line(model: Any) -> None:
    definition, _ = model
    reply = Message(Error(code=1, reason="Traceback:\n  File x\nmodule.sub.ValueError: bad value"),
                    reply_to=_train())

    checked = _check(reply, definition)

    assert checked == Rejection("site-a", 7, "client failed: ValueError: bad value", {})


def test_a_refusal_is_rejected_with_its_reason_and_finite_measurements(model: Any) -> None:
    definition, _ = model
    long_name = "m" * 65
    reply = _refusal("parity failed:\nmax diff 0.3", {long_name: 1.0, "diff": 0.3, "nan": math.nan,
                                                      "inf": math.inf, "list": [1.0, 2.0], "n": 3})

    checked = _check(reply, definition)

    assert checked == Rejection("site-a", 7, "client refused to train: parity failed: max diff 0.3",
                                {"diff": 0.3, "n": 3.0})


def test_a_refusal_without_reason_or_metrics(model: Any) -> None:
    definition, _ = model

    assert _check(_refusal(None), definition) == Rejection(
        "site-a", 7, "client refused to train: no reason given", {})


def test_a_refusal_with_too_many_metrics_is_rejected_for_them(model: Any) -> None:
    definition, _ = model

    reason = _rejected(_refusal("x", {f"m{i}": 1.0 for i in range(65)}), definition)

    assert reason == "reply has 65 metrics; at most 64 are accepted"


def test_a_refusal_record_of_the_wrong_kind_is_rejected(model: Any) -> None:
    definition, _ = model
    reply = Message(RecordDict({wire.REFUSAL: MetricRecord({"x": 1})}), reply_to=_train())

    assert _rejected(reply, definition) == (
        "record 'flonnx.refusal' is a MetricRecord, expected a ConfigRecord")


# -- records ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [wire.ARRAYS, wire.METRICS, wire.LINEAGE])
def test_a_reply_lacking_a_record_is_rejected_naming_it(model: Any, name: str) -> None:
    definition, weights = model

    assert _rejected(_reply(weights, drop=name), definition) == f"reply lacks records [{name!r}]"


@pytest.mark.parametrize(("name", "record", "expected"), [
    (wire.ARRAYS, ConfigRecord({"a": 1}), "ArrayRecord"),
    (wire.METRICS, ConfigRecord({"a": 1}), "MetricRecord"),
    (wire.LINEAGE, MetricRecord({"a": 1}), "ConfigRecord"),
])
def test_a_record_of_the_wrong_kind_is_rejected(model: Any, name: str, record: Any, expected: str) -> None:
    definition, weights = model
    reply = _reply(weights)
    reply.content[name] = record

    assert _rejected(reply, definition) == (
        f"record {name!r} is a {type(record).__name__}, expected a {expected}")


# -- lineage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("other", ["o" * 11 + "p" * 53, "a" * 11 + "z" * 53])  # after BASE, before it
def test_an_update_of_another_base_version_is_rejected(model: Any, other: str) -> None:
    definition, weights = model

    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_BASE_VERSION: other})),
                       definition)

    assert reason == f"update is based on {other[:12]}, expected {BASE[:12]}"


@pytest.mark.parametrize("named", ["site-b", "site-0"])
def test_a_reply_naming_another_client_is_rejected(model: Any, named: str) -> None:
    definition, weights = model

    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_CLIENT: named})),
                       definition)

    assert reason == f"reply names client {named!r}, expected 'site-a'"


@pytest.mark.parametrize(("value", "shown"), [(None, "NoneType"), (3, "int"), (b"x", "bytes")])
def test_a_lineage_text_field_of_another_type_is_rejected(model: Any, value: Any, shown: str) -> None:
    definition, weights = model
    lineage = _lineage(weights, **{wire.REPLY_FRAMEWORK_VERSION: value})
    if value is None:
        del lineage[wire.REPLY_FRAMEWORK_VERSION]

    reason = _rejected(_reply(weights, lineage=lineage), definition)

    assert reason == f"lineage field 'framework-version' must be text, got {shown}"


@pytest.mark.parametrize("field", [wire.REPLY_BASE_VERSION, wire.REPLY_CLIENT, wire.REPLY_FRAMEWORK,
                                   wire.REPLY_FRAMEWORK_VERSION, wire.REPLY_WEIGHTS_ID])
def test_every_lineage_text_field_must_be_text(model: Any, field: str) -> None:
    definition, weights = model

    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{field: 1})), definition)

    assert reason == f"lineage field {field!r} must be text, got int"


def test_a_lineage_text_field_is_bounded_at_256_characters(model: Any) -> None:
    definition, weights = model

    update = _accepted(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_FRAMEWORK: "f" * 256})),
                       definition)
    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_FRAMEWORK: "f" * 257})),
                       definition)

    assert update.framework == "f" * 256
    assert reason == "lineage field 'framework' has 257 characters; at most 256 are accepted"


@pytest.mark.parametrize(("seed", "shown"), [
    (True, "True"), ("11", "'11'"), (1.5, "1.5"), ("s" * 100, repr("s" * 100)[:40]), (None, "None"),
])
def test_a_seed_that_is_not_an_integer_is_rejected(model: Any, seed: Any, shown: str) -> None:
    definition, weights = model
    lineage = _lineage(weights, **{wire.REPLY_SEED: seed})
    if seed is None:
        del lineage[wire.REPLY_SEED]

    reason = _rejected(_reply(weights, lineage=lineage), definition)

    assert reason == f"lineage field 'seed' must be an integer, got {shown}"


@pytest.mark.parametrize("seed", [SEED - 1, SEED + 1, 0])
def test_an_update_trained_with_another_seed_is_rejected(model: Any, seed: int) -> None:
    definition, weights = model

    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_SEED: seed})), definition)

    assert reason == f"client trained with seed {seed}, sent {SEED}"


@pytest.mark.parametrize("reported", ["0123456789abcdef" * 4, "fedcba9876543210" * 4])
def test_weights_that_do_not_hash_to_the_reported_id_are_rejected(model: Any, reported: str) -> None:
    definition, weights = model

    reason = _rejected(_reply(weights, lineage=_lineage(weights, **{wire.REPLY_WEIGHTS_ID: reported})),
                       definition)

    assert reason == f"weights hash to {weights_id(weights)[:12]} but the client reported {reported[:12]}"


def test_weights_with_a_non_finite_value_are_rejected(model: Any) -> None:
    definition, weights = model
    bad = {**weights, "l1.b": np.full_like(weights["l1.b"], np.nan)}

    reason = _rejected(_reply(bad), definition)

    assert reason.startswith(f"update from site-a does not match definition {definition.id[:12]}: ")
    assert "tensor 'l1.b': 8 non-finite values" in reason


# -- num-examples -------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 10**12])
def test_num_examples_from_one_to_a_trillion_is_accepted(model: Any, count: int) -> None:
    definition, weights = model

    update = _accepted(_reply(weights, metrics={wire.REPLY_NUM_EXAMPLES: count}), definition)

    assert update.num_examples == count and update.metrics == {}


@pytest.mark.parametrize("count", [0, -1, -5, 2.5, 10**12 + 1, None])
def test_num_examples_that_is_not_a_positive_integer_up_to_a_trillion_is_rejected(
    model: Any, count: int | float | None,
) -> None:
    definition, weights = model
    metrics = {"train-loss": 0.5} if count is None else {wire.REPLY_NUM_EXAMPLES: count}

    reason = _rejected(_reply(weights, metrics=metrics), definition)

    assert reason == f"num-examples must be a positive integer, got {float(count or 0)}"


# -- metrics ------------------------------------------------------------------------------------

def test_metrics_are_bounded_at_64_values_of_64_character_names(model: Any) -> None:
    definition, weights = model
    many = {wire.REPLY_NUM_EXAMPLES: 10, **{f"m{i}": float(i) for i in range(63)}}
    named = {wire.REPLY_NUM_EXAMPLES: 10, "n" * 64: 1.0}

    assert len(_accepted(_reply(weights, metrics=many), definition).metrics) == 63
    assert _accepted(_reply(weights, metrics=named), definition).metrics == {"n" * 64: 1.0}
    assert _rejected(_reply(weights, metrics={**many, "one-more": 1.0}), definition) == (
        "reply has 65 metrics; at most 64 are accepted")
    assert _rejected(_reply(weights, metrics={**named, "n" * 65: 1.0}), definition) == (
        "metric name of 65 characters; at most 64")


@pytest.mark.parametrize(("value", "reason"), [
    (math.nan, "metric 'loss' is not a finite number (nan)"),
    (-math.inf, "metric 'loss' is not a finite number (-inf)"),
    ([1.0, 2.0], "metric 'loss' is a list, not a number"),
])
def test_a_metric_that_is_not_a_finite_number_is_rejected(model: Any, value: Any, reason: str) -> None:
    definition, weights = model

    reply = _reply(weights, metrics={wire.REPLY_NUM_EXAMPLES: 10, "loss": value})

    assert _rejected(reply, definition) == reason


def test_a_boolean_metric_is_not_a_number() -> None:
    # Flower's MetricRecord refuses booleans; the checker does not rely on it
    with pytest.raises(InvalidUpdate, match=r"^metric 'ok' is a bool, not a number$"):
        replies._metrics({"ok": True})
    assert replies._metrics({"ok": True, "n": 2}, strict=False) == {"n": 2.0}


# -- the handshake ------------------------------------------------------------------------------

MINE = f"this coordinator speaks protocol 2 (flonnx {flonnx_version()})"


class _Version(int):
    """An integer of another class (an enum member, a decoder's type): its value decides."""


def test_a_node_of_this_protocol_is_accepted() -> None:
    assert check_protocol({wire.REPLY_PROTOCOL: 2, wire.REPLY_FLONNX: "0.1.0"}) is None
    assert check_protocol({wire.REPLY_PROTOCOL: _Version(2)}) is None


@pytest.mark.parametrize(("hello", "reason"), [
    ({}, "node states no flonnx protocol (flonnx unknown)"),
    ({wire.REPLY_FLONNX: "0.0.9"}, "node states no flonnx protocol (flonnx 0.0.9)"),
    ({wire.REPLY_PROTOCOL: 3, wire.REPLY_FLONNX: "9.0"}, "node speaks flonnx protocol 3 (flonnx 9.0)"),
    ({wire.REPLY_PROTOCOL: 2.0}, "node speaks flonnx protocol 2.0 (flonnx unknown)"),
    ({wire.REPLY_PROTOCOL: "2", wire.REPLY_FLONNX: ""}, "node speaks flonnx protocol 2 (flonnx unknown)"),
    ({wire.REPLY_PROTOCOL: 1, wire.REPLY_FLONNX: 5}, "node speaks flonnx protocol 1 (flonnx unknown)"),
    ({wire.REPLY_PROTOCOL: "p" * 100, wire.REPLY_FLONNX: "v" * 100},
     f"node speaks flonnx protocol {'p' * 40} (flonnx {'v' * 40})"),
])
def test_a_node_of_another_or_no_protocol_is_refused_naming_both(hello: dict[str, Any], reason: str) -> None:
    assert check_protocol(hello) == f"{reason}; {MINE}"


# -- the environment ----------------------------------------------------------------------------

def test_an_environment_is_a_json_object_of_text() -> None:
    assert parse_environment('{"numpy": "2.4.6", "cpus": 4}') == {"numpy": "2.4.6", "cpus": "4"}
    with pytest.raises(InvalidUpdate, match=r"^the environment must be a JSON object, got list$"):
        parse_environment("[]")


def test_an_environment_of_100_entries_of_200_characters_is_accepted() -> None:
    environment = {f"{i:03d}".ljust(200, "k"): "v" * 200 for i in range(100)}

    assert parse_environment(json.dumps(environment)) == environment


@pytest.mark.parametrize("environment", [
    pytest.param({f"k{i}": "1" for i in range(101)}, id="101 entries"),
    pytest.param({"k" * 201: "1"}, id="a name of 201"),
    pytest.param({"numpy": "1" * 201}, id="a version of 201"),
])
def test_an_environment_over_its_bounds_is_refused(environment: dict[str, str]) -> None:
    with pytest.raises(InvalidUpdate, match=r"^the environment must have at most 100 entries of at most "
                                            r"200 characters$"):
        parse_environment(json.dumps(environment))


def test_the_environment_json_is_bounded_for_every_entry_escaped() -> None:
    bound = 100 * (2 * 6 * 200 + 8)  # quotes, colon, comma, each character as \uXXXX

    assert parse_environment("{}" + " " * (bound - 2)) == {}
    with pytest.raises(InvalidUpdate, match=rf"^the environment is {bound + 1} characters of JSON; at most "
                                            rf"{bound} are accepted$"):
        parse_environment("{}" + " " * (bound - 1))


# -- the identity of nodes and rejections -------------------------------------------------------

def test_a_node_and_a_rejection_are_immutable() -> None:
    rejection = Rejection("site-a", 7, "why")

    with pytest.raises(dataclasses.FrozenInstanceError):
        CLIENT.key = "site-b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejection.reason = "other"  # type: ignore[misc]
    assert rejection.metrics == {}


def test_a_node_is_identified_without_its_environment() -> None:
    stated = ClientInfo(7, "site-a", "numpy", "2", 10, {"numpy": "1"})
    bare = ClientInfo(7, "site-a", "numpy", "2", 10)

    assert stated == bare and hash(stated) == hash(bare)


# -- untrusted text -----------------------------------------------------------------------------

def test_one_line_keeps_printable_text_and_joins_the_rest() -> None:
    assert one_line("a\tb\n\nc\x1b[31md\x1b[0m \x00e") == "a b cd e"
    assert one_line("plain text") == "plain text"
    assert one_line("") == ""


def test_one_line_cuts_at_500_characters() -> None:
    assert one_line("x" * 500) == "x" * 500
    assert one_line("x" * 501) == "x" * 499 + "…"
    assert one_line("y" * 3000) == "y" * 499 + "…"


def test_one_line_reads_only_the_first_4000_characters() -> None:
    assert one_line(" " * 3999 + "ab") == "a"


def test_failure_line_takes_the_first_exception_that_is_not_an_engine_wrapper() -> None:
    reason = ("header line\n"
              "ray.exceptions.RayTaskError(ClientAppException): wrapped\n"
              "flwr.clientapp.client_app.ClientAppException: wrapped\n"
              "\x1b[31mpkg.mod.KeyError: 'w'\x1b[0m   \n"
              "ValueError: later")

    assert failure_line(reason) == "KeyError: 'w'"
    assert failure_line("ValueError: raised in a ClientAppException handler\nlast line") == (
        "ValueError: raised in a ClientAppException handler")  # only the type names a wrapper
    assert failure_line("RuntimeError: boom") == "RuntimeError: boom"


def test_failure_line_without_an_exception_keeps_the_last_non_empty_line() -> None:
    assert failure_line("first\nlost at 0x7f12 (pid=4, ip=10.0.0.1)\n\n   \n") == "lost at … (…, …)"
    assert failure_line("") == ""


def test_describe_error_names_the_type_of_foreign_exceptions() -> None:
    assert describe_error(LineageError("no such version")) == "no such version"
    assert describe_error(KeyError("w")) == "KeyError: 'w'"
