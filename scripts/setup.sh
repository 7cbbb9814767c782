#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: Elixir/Erlang from apt, the
# ONNX Runtime shared library from the PyPI wheel, and the Python venv that
# tests and benchmarks use. Re-running it only does what is still missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
ORT_DIR=priv/onnxruntime
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v mix >/dev/null 2>&1 || ! [ -d /usr/lib/erlang/usr/include ] || ! command -v python3 >/dev/null 2>&1; then
  echo "==> installing Elixir, Erlang headers and Python from apt"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    elixir erlang-dev erlang-jiffy python3 python3-venv python3-pip unzip curl build-essential >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "==> installing Rust with rustup (apt's cargo is too old for ort)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if ! [ -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import numpy, onnx, onnxruntime, mcp' 2>/dev/null \
  || ! cmp -s scripts/requirements.txt .venv/.requirements.txt; then
  echo "==> installing Python test dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt .venv/.requirements.txt
fi

if ! [ -f "$ORT_LIB" ]; then
  echo "==> fetching libonnxruntime.so.$ORT_VERSION from the PyPI wheel"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
    "onnxruntime==$ORT_VERSION" -d "$tmp"
  unzip -q -o "$tmp"/onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$tmp"
  mkdir -p "$ORT_DIR"
  mv "$tmp/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB"
fi
echo "==> setup done: $(readlink -f "$ORT_LIB")"
