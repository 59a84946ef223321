"""Names of the records flonnx puts in Flower messages, shared by server and client.

Flower-free: the server and client wrap these plain values in Flower records themselves.

Server -> client (train): ``arrays`` (ArrayRecord, initializer name -> ndarray), ``config``
(ConfigRecord: training hyper-parameters), ``flonnx.lineage`` (ConfigRecord, keys ``LINEAGE_*``).
Client -> server (train reply): ``arrays``, ``metrics`` (MetricRecord with ``num-examples``),
``flonnx.lineage`` (ConfigRecord, keys ``REPLY_*``).

Protocol 2 sends what does not change once per node instead of in every message:

- Definitions are cached by id. The handshake announces the run's definition
  (``HELLO_DEFINITION``); a node keeps the definitions it verified (bounded, in its Flower node
  state) and lists their ids in its hello reply (``REPLY_DEFINITIONS``). A train or evaluate
  message always names ``LINEAGE_DEFINITION_ID`` and carries the bytes (``LINEAGE_DEFINITION``)
  only when the coordinator does not know the node holds them. A node that lacks them (it
  restarted) refuses with ``REFUSAL_MISSING_DEFINITION`` naming the id; the coordinator resends
  that message with the bytes at once, in the same round (docs: server/federation.py).
- The node's environment (``REPLY_ENVIRONMENT``) travels in its hello reply only; the coordinator
  keeps it per node and records it with each of the node's updates.
"""

from __future__ import annotations

import json
from typing import Any

from flonnx.exchange.errors import InvalidUpdate

#: The longest JSON text a node may put in one field of a message (environment, feature names,
#: categories, held definition ids): 4 MiB of characters.
MAX_JSON_FIELD = 4 * 1024 * 1024


def loads_field(text: object, what: str, *, max_chars: int = MAX_JSON_FIELD) -> Any:
    """Parse untrusted JSON text from a message field, bounded in length and nesting.

    Raises:
        InvalidUpdate: not text, longer than ``max_chars``, not JSON, or nested too deeply for the
            parser (``[[[[...`` is refused with a message, not a ``RecursionError``).
    """
    if not isinstance(text, str):
        raise InvalidUpdate(f"{what} must be JSON text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidUpdate(f"{what} is {len(text)} characters of JSON; at most {max_chars} are accepted")
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidUpdate(f"{what} is JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidUpdate(f"{what} is not JSON: {exc}") from None

#: The version of this message vocabulary. The coordinator sends it in the handshake, a node answers
#: with its own, and a node that speaks another version (or none) is refused before any round. Bump
#: it whenever a key's meaning changes or a key becomes required.
PROTOCOL_VERSION = 2  # 2: definitions cached by id at the node, environment in the handshake

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
LINEAGE = "flonnx.lineage"
HELLO = "flonnx.hello"
REFUSAL = "flonnx.refusal"  # client -> server instead of arrays: ConfigRecord {reason}, + metrics
REFUSAL_REASON = "reason"
#: in a refusal: the definition id the message named and the node does not hold (resend the bytes)
REFUSAL_MISSING_DEFINITION = "missing-definition"

# server -> client
LINEAGE_RUN = "run"
LINEAGE_ROUND = "round"
LINEAGE_VERSION = "version"
LINEAGE_DEFINITION_ID = "definition-id"
LINEAGE_WEIGHTS_ID = "weights-id"
LINEAGE_DEFINITION = "definition"  # canonical stripped ONNX bytes; absent if the node holds them
LINEAGE_SEED = "seed"

# server -> client, in the handshake (``flonnx.hello``)
HELLO_TASK = "task"
HELLO_STATS = "stats"  # true: reply with feature statistics (``flonnx.stats`` ArrayRecord)
STATS = "flonnx.stats"  # client -> server: count/sum/squares per feature, target moments
HELLO_VOCABULARIES = "vocabularies"  # JSON {column: [values]} agreed for categorical columns
REPLY_CATEGORIES = "categories"  # JSON {column: [values seen at this node]}
REPLY_FEATURES = "features"  # JSON [raw feature column names, in order]
HELLO_PROTOCOL = "protocol"  # server -> client: PROTOCOL_VERSION (int)
HELLO_FLONNX = "flonnx"  # server -> client: the coordinator's flonnx version
HELLO_DEFINITION = "definition"  # canonical stripped ONNX bytes the run starts from (site policy)
REPLY_PROTOCOL = "protocol"  # client -> server, in every hello reply (refusals too): int
REPLY_FLONNX = "flonnx"  # client -> server: the node's flonnx version
REPLY_DEFINITIONS = "definitions"  # client -> server, in the hello reply: ids of cached definitions

# server -> client, in the ``config`` record: client-side DP clipping the node must apply
# ("fixed" or "adaptive"; absent = none). Flower's own clipping norm key rides along.
CONFIG_DP_CLIPPING = "flonnx.dp-clipping"
CONFIG_TASK = "task"  # the federation's task, read by every trainer

# client -> server
REPLY_BASE_VERSION = "base-version"
REPLY_CLIENT = "client"
REPLY_FRAMEWORK = "framework"
REPLY_FRAMEWORK_VERSION = "framework-version"
REPLY_WEIGHTS_ID = "weights-id"
REPLY_SEED = "seed"
# in the hello reply (once per node, not per update): canonical JSON of lineage.environment() +
# "bundle" (client/bundle.py); the coordinator records it with each of the node's updates
REPLY_ENVIRONMENT = "environment"
REPLY_NUM_EXAMPLES = "num-examples"
REPLY_NUM_FEATURES = "num-features"
# a node that cannot serve (bad data, unknown framework) answers the handshake with a refusal

__all__ = [name for name in dir() if name.isupper()]
