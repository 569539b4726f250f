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
pip install -q -e ".[faces,train,curate,onnx,dev,app]"
# MediaPipe 0.10.21 is the newest release that ships its face models; its declared pins would
# downgrade numpy and pull opencv-contrib over opencv-python-headless, so install it without them
# (its real runtime needs are in the [faces] extra above).
pip install -q --no-deps mediapipe==0.10.21
# The app's browser tests (tests/app): Playwright drives the system's Chromium; no browser is downloaded
# (never run `playwright install`). CI runs as root: Debian's chromium comes from apt when it is missing.
pip install -q "playwright>=1.40"
if [ ! -x "${CHROMIUM_PATH:-/usr/lib/chromium/chromium}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser tests (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver fonts-liberation >/dev/null; } ||
      echo "warning: apt-get could not install chromium; the browser tests will fail in CI" >&2
  else
    echo "note: no Chromium at ${CHROMIUM_PATH:-/usr/lib/chromium/chromium}; the browser tests need it" \
      "(as root: apt-get install chromium fonts-liberation)" >&2
  fi
fi
python -c "import torch, diffusers, mediapipe, fantasy_portrait; print('fantasy-portrait', fantasy_portrait.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
