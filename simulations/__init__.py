"""Named scenarios, built-in data and the simulation runner behind ``flonnx simulate``."""
