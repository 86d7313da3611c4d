"""Test-wide settings: training runs skip their figures (``MXLSTM_FIGURES=0``, ~2 s a
run, inherited by the subprocesses the tests start); tests/e2e/test_report_page.py turns
them back on where it checks them."""

import os

os.environ.setdefault("MXLSTM_FIGURES", "0")
