from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_KIND_UNSPECIFIED: _ClassVar[VersionKind]
    INITIAL: _ClassVar[VersionKind]
    CLIENT_UPDATE: _ClassVar[VersionKind]
    AGGREGATE: _ClassVar[VersionKind]
    REJECTED: _ClassVar[VersionKind]
VERSION_KIND_UNSPECIFIED: VersionKind
INITIAL: VersionKind
CLIENT_UPDATE: VersionKind
AGGREGATE: VersionKind
REJECTED: VersionKind

class Metric(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class VersionRecord(_message.Message):
    __slots__ = ("schema", "kind", "round", "parents", "definition_id", "weights_id", "framework", "framework_version", "client", "num_examples", "metrics", "seed", "strategy", "strategy_config", "environment", "reason")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    schema: int
    kind: VersionKind
    round: int
    parents: _containers.RepeatedScalarFieldContainer[str]
    definition_id: str
    weights_id: str
    framework: str
    framework_version: str
    client: str
    num_examples: int
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    seed: int
    strategy: str
    strategy_config: _containers.RepeatedCompositeFieldContainer[Entry]
    environment: _containers.RepeatedCompositeFieldContainer[Entry]
    reason: str
    def __init__(self, schema: _Optional[int] = ..., kind: _Optional[_Union[VersionKind, str]] = ..., round: _Optional[int] = ..., parents: _Optional[_Iterable[str]] = ..., definition_id: _Optional[str] = ..., weights_id: _Optional[str] = ..., framework: _Optional[str] = ..., framework_version: _Optional[str] = ..., client: _Optional[str] = ..., num_examples: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., seed: _Optional[int] = ..., strategy: _Optional[str] = ..., strategy_config: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., environment: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...
