"""flonnx: federated learning across ML frameworks, with ONNX as the exchange format.

The Python API (:mod:`flonnx.api`): ``load_spec``, ``spec``, ``simulate`` and ``history``.
"""

from flonnx.api import ClientResult, RoundResult, RunHistory, history, load_spec, simulate, spec

__version__ = "0.1.0"

__all__ = ["ClientResult", "RoundResult", "RunHistory", "__version__", "history", "load_spec",
           "simulate", "spec"]
