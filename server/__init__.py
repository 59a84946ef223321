"""The flonnx ServerApp: a versioning layer around any Flower strategy."""
