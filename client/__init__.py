"""The flonnx ClientApp: trains the round's definition in this node's framework."""
