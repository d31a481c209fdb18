"""The lab lives in bench/lab (out of the wheel): its tests import it as the benchmarks do, with bench/ on the path."""

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
