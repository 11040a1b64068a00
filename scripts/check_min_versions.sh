#!/usr/bin/env bash
# The floors in pyproject.toml hold: a fresh virtualenv with the oldest numpy, scipy and
# matplotlib the project declares (scripts/min-versions.txt) passes the tests. Not part of CI
# (it doubles its time): run it when a floor or a numpy/scipy call changes.
#
#   bash scripts/check_min_versions.sh             # VENV=... to choose the virtualenv's folder
#   TORCH=2.4.1 bash scripts/check_min_versions.sh # torch's floor too: a CUDA build from PyPI
#                                                  # (about 3 GB with its libraries)
#
# Two kinds of test skip there, saying why: mypy (the annotations are checked against newer
# numpy and matplotlib type information) and the docs site (no docs extra). The notebooks are
# left out: today's IPython inline backend no longer runs on matplotlib 3.6.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-${TMPDIR:-/tmp}/toeplitz-conv-min-versions}
"${PYTHON:-python3}" -m venv "$VENV"
. "$VENV/bin/activate"
TORCH=${TORCH:-2.13.0}  # 2.13.0: the CPU build on this project's machines' disk
python -m pip install -q "torch==$TORCH" -c scripts/min-versions.txt
python -m pip install -q -e ".[test]" "torch==$TORCH" -c scripts/min-versions.txt
python -c "import numpy, scipy, matplotlib, torch; print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'matplotlib', matplotlib.__version__, 'torch', torch.__version__)"
python -m pytest -q -p no:cacheprovider --deselect tests/test_notebooks.py
