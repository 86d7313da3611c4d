"""``python -m mxlstm.bench ...``: see :mod:`mxlstm.bench.driver`."""

import sys

from mxlstm.bench.driver import main

sys.exit(main())
