"""The lab: baselines, keep-ratio sweeps, the demo's story and its data. Built on everything, used by nothing in the
library (only by the CLI, the benchmarks and the tests)."""
