"""Names of the records flonnx puts in Flower messages, shared by server and client.

Flower-free: the server and client wrap these plain values in Flower records themselves.

Server -> client (train): ``arrays`` (ArrayRecord, initializer name -> ndarray), ``config``
(ConfigRecord: training hyper-parameters), ``flonnx.lineage`` (ConfigRecord, keys ``LINEAGE_*``).
Client -> server (train reply): ``arrays``, ``metrics`` (MetricRecord with ``num-examples``),
``flonnx.lineage`` (ConfigRecord, keys ``REPLY_*``).
"""

from __future__ import annotations

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
REPLY_ENVIRONMENT = "environment"  # canonical JSON of flonnx.exchange.lineage.environment()
REPLY_NUM_EXAMPLES = "num-examples"
REPLY_NUM_FEATURES = "num-features"
# a node that cannot serve (bad data, unknown framework) answers the handshake with a refusal

__all__ = [name for name in dir() if name.isupper()]
