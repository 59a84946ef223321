"""``python -m benchmarks run --quick|--full [--only B3,B1]`` (see :mod:`benchmarks.run`)."""

from benchmarks.run import main

raise SystemExit(main())
