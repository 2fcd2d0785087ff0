#!/usr/bin/env bash
# Isolated converter environment for the TF.js models (CenterNet detector, nsfwjs moderation): TensorFlow,
# tf2onnx and the tensorflowjs loader, pinned, in their own venv outside the repository.
#
#   deploy/converters/tf2onnx-venv.sh          create or repair the venv (idempotent); print its python path
#                                              alone on stdout (progress on stderr)
#   deploy/converters/tf2onnx-venv.sh --check  exit 0 if the venv is complete with the pinned versions, else 1
#
# Location: $VISEARCH_CONVERTER_DIR, else <$VISEARCH_MODEL_CACHE_DIR>/../tools (default
# ~/.cache/visearch/tools), so it is reused by every build and never enters the project's .venv (whose
# protobuf 6 / numpy 2 pins TensorFlow 2.15 cannot share). See deploy/converters/README.md.
set -euo pipefail

TENSORFLOW_VERSION="2.15.1"    # last TF with Keras 2 as tf.keras: the tfjs layers loader needs Keras 2.
                               # "tensorflow", not "tensorflow-cpu": tensorflow-decision-forests requires it
                               # by that name (on Linux x86-64 the base wheel is the same CPU build)
TF_KERAS_VERSION="2.15.1"
TF2ONNX_VERSION="1.16.1"       # supports TF 2.9-2.15 and opsets up to 18
TENSORFLOWJS_VERSION="4.22.0"  # its layers-model loader; installed --no-deps (see below)
TFDF_VERSION="1.8.1"           # the TF 2.15 release; tensorflowjs imports these three at import time
TFHUB_VERSION="0.16.1"
JAX_VERSION="0.4.23"           # works with numpy 1.26 and TF 2.15's ml-dtypes 0.3
ONNX_VERSION="1.16.2"          # protobuf 3.20 compatible
PROTOBUF_VERSION="3.20.3"      # tf2onnx 1.16 needs protobuf~=3.20
NUMPY_VERSION="1.26.4"         # TF 2.15 needs numpy<2
VENV_NAME="tf2onnx-venv"
PYTHON="${VISEARCH_CONVERTER_PYTHON:-python3}"

cache="${VISEARCH_MODEL_CACHE_DIR:-$HOME/.cache/visearch/models}"
TOOLS="${VISEARCH_CONVERTER_DIR:-$(dirname "$cache")/tools}"
VENV="$TOOLS/$VENV_NAME"

say() { echo "tf2onnx-venv: $*" >&2; }
die() { echo "tf2onnx-venv: $*" >&2; exit 1; }

venv_ok() {
  [[ -x "$VENV/bin/python" && -f "$VENV/.complete" ]] &&
    "$VENV/bin/python" - "$TENSORFLOW_VERSION" "$TF2ONNX_VERSION" "$TENSORFLOWJS_VERSION" "$ONNX_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = dict(zip(("tensorflow", "tf2onnx", "tensorflowjs", "onnx"), sys.argv[1:]))
sys.exit(0 if all(version(name) == v for name, v in want.items()) else 1)
PY
}

if [[ "${1:-}" == "--check" ]]; then venv_ok; exit $?; fi
[[ $# -eq 0 ]] || die "usage: $0 [--check]"

if ! venv_ok; then
  pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ||
    die "no Python interpreter '$PYTHON' (set VISEARCH_CONVERTER_PYTHON)"
  case "$pyver" in
    3.9|3.10|3.11) ;;
    *) die "'$PYTHON' is Python $pyver; TensorFlow $TENSORFLOW_VERSION needs 3.9-3.11 (set VISEARCH_CONVERTER_PYTHON)" ;;
  esac
  say "creating $VENV: tensorflow==$TENSORFLOW_VERSION tf2onnx==$TF2ONNX_VERSION tensorflowjs==$TENSORFLOWJS_VERSION (~2 GB, a few minutes)"
  mkdir -p "$TOOLS"
  rm -f "$VENV/.complete"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" "tensorflow==$TENSORFLOW_VERSION" "tf-keras==$TF_KERAS_VERSION" "tf2onnx==$TF2ONNX_VERSION" \
    "onnx==$ONNX_VERSION" "protobuf==$PROTOBUF_VERSION" "numpy==$NUMPY_VERSION" \
    "tensorflow-decision-forests==$TFDF_VERSION" "tensorflow-hub==$TFHUB_VERSION" \
    "jax==$JAX_VERSION" "jaxlib==$JAX_VERSION" six packaging >&2
  # tensorflowjs itself without its declared deps: they would pull flax (only used by its JAX converter, lazily)
  # and unpinned newer jax/TF releases. The three it imports at import time are installed, pinned, above.
  "${pip[@]}" --no-deps "tensorflowjs==$TENSORFLOWJS_VERSION" >&2
  "$VENV/bin/python" -c 'import tensorflow, tf2onnx, tensorflowjs.converters.keras_tfjs_loader' >&2 ||
    die "the converter packages do not import in $VENV"
  touch "$VENV/.complete"
  venv_ok || die "pinned versions did not install into $VENV"
fi
echo "$VENV/bin/python"
