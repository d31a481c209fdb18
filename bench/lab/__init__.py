"""The lab: code only the benchmarks (and their tests) use. It is not part of the wheel."""
