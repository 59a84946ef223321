"""``python -m mutation``: see :mod:`mutation.run`."""

from mutation.run import main

raise SystemExit(main())
