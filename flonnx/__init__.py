"""flonnx: federated learning across ML frameworks, with ONNX as the exchange format."""

__version__ = "0.1.0"
