"""``python -m edge.benchmarks``: the standard benchmark suite (see :mod:`benchmarks.suite`)."""

import sys

from .suite import main

sys.exit(main())
