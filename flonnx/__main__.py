"""``python -m flonnx`` = the ``flonnx`` command."""

from flonnx.cli import main

main()
