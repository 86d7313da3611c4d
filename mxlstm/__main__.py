"""``python -m mxlstm`` runs the ``mxlstm`` command."""

import sys

from mxlstm.cli import main

sys.exit(main())
