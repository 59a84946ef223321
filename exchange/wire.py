"""Names of the records flonnx puts in Flower messages, shared by server and client.

Flower-free: the server and client wrap these plain values in Flower records themselves.

Server -> client (train): ``arrays`` (ArrayRecord, initializer name -> ndarray), ``config``
(ConfigRecord: training hyper-parameters), ``flonnx.lineage`` (ConfigRecord, keys ``LINEAGE_*``).
Client -> server (train reply): ``arrays``, ``metrics`` (MetricRecord with ``num-examples``),
``flonnx.lineage`` (ConfigRecord, keys ``REPLY_*``).
"""

from __future__ import annotations

#: The version of this message vocabulary. The coordinator sends it in the handshake, a node answers
#: with its own, and a node that speaks another version (or none) is refused before any round. Bump
#: it whenever a key's meaning changes or a key becomes required.
PROTOCOL_VERSION = 1

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
LINEAGE = "flonnx.lineage"
HELLO = "flonnx.hello"
REFUSAL = "flonnx.refusal"  # client -> server instead of arrays: ConfigRecord {reason}, + metrics
REFUSAL_REASON = "reason"

# server -> client
LINEAGE_RUN = "run"
LINEAGE_ROUND = "round"
LINEAGE_VERSION = "version"
LINEAGE_DEFINITION_ID = "definition-id"
LINEAGE_WEIGHTS_ID = "weights-id"
LINEAGE_DEFINITION = "definition"  # canonical stripped ONNX bytes
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
REPLY_ENVIRONMENT = "environment"  # canonical JSON of lineage.environment() + "bundle" (client/bundle.py)
REPLY_NUM_EXAMPLES = "num-examples"
REPLY_NUM_FEATURES = "num-features"
# a node that cannot serve (bad data, unknown framework) answers the handshake with a refusal

__all__ = [name for name in dir() if name.isupper()]
