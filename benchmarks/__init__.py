"""flonnx benchmarks (issue #10): ``python -m benchmarks run --quick|--full [--only B3,B1]``."""
