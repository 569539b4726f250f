#!/usr/bin/env bash
# Create .venv (if needed) and install fantasy-portrait with everything its features and tests use.
# torch is installed first and pinned to the CPU wheel that lies on this project's machines
# (set FP_TORCH_SPEC, e.g. "torch>=2.4", on a CUDA machine to keep the torch you want).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
pip install -q "${FP_TORCH_SPEC:-torch==2.13.0}"
pip install -q -e ".[faces,train,curate,onnx,dev]"
# MediaPipe 0.10.21 is the newest release that ships its face models; its declared pins would
# downgrade numpy and pull opencv-contrib over opencv-python-headless, so install it without them
# (its real runtime needs are in the [faces] extra above).
pip install -q --no-deps mediapipe==0.10.21
python -c "import torch, diffusers, mediapipe, fantasy_portrait; print('fantasy-portrait', fantasy_portrait.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
