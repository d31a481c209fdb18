#!/usr/bin/env bash
# The GPU check as one command with a hard time limit, for a machine with one H100/H200.
#
#   bash bench/gpu_check.sh --fetch-wheels      # here, with PyPI: the packages a bare CUDA image lacks -> .whl/
#   bash bench/gpu_check.sh [gpu_check.py options, e.g. --profile]     # there: install .whl/ if present, run
#
# The machine's own python3 must hold a CUDA torch; the wheels carry what it may lack (this project's versions of
# transformers, TRL, datasets, bitsandbytes and their small dependencies; about 57 MB, `.whl/` is git-ignored).
# Results go to $OUT when it is set (a device session's output folder), else to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(bitsandbytes trl datasets dill multiprocess transformers huggingface_hub httpx2 httpcore2 truststore)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    pins=()
    for name in "${WHEELS[@]}"; do  # the versions this checkout's environment runs
        pins+=("$name==$(python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
    done
    platforms=()
    for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
        platforms+=(--platform "${tag}_x86_64")
    done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" --platform any -d .whl "${pins[@]}"
    du -sh .whl
    exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# 450 s of budget for the steps; the hard limit leaves room for the imports and writing the results
timeout 520 python3 bench/gpu_check.py --device cuda --budget-s 450 --out "${OUT:-bench/results}" "$@"
