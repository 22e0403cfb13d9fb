#!/usr/bin/env bash
# Builds the llama.cpp peers once per machine, both from the llama-cpp-python 0.3.36 sdist on PyPI:
# llama-cpp-python (in its own venv, with gguf/transformers for the GGUF converter) and llama-server
# (cmake, from the sdist's vendor/llama.cpp), into a cache outside any checkout. ~15 min on 2 cores.
# Usage: bench/peers/build.sh      prints the cache directory when done
# Cache: $GS_PEERS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/gpt-service-peers
#   venv/  src/llama_cpp_python-0.3.36/  llama-server-build/bin/llama-server  *.gguf
set -eu
C=${GS_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpt-service-peers}; V=$C/venv; S=$C/src; B=$C/llama-server-build
mkdir -p "$C"
[ -x "$V/bin/python" ] || python3 -m venv "$V"
"$V/bin/python" -c 'import llama_cpp' 2>/dev/null || CMAKE_ARGS="-DGGML_NATIVE=ON" "$V/bin/pip" install -q \
  llama-cpp-python==0.3.36 gguf numpy "torch==2.13.0" transformers sentencepiece safetensors httpx
[ -d "$S/llama_cpp_python-0.3.36" ] || { mkdir -p "$S"; "$V/bin/pip" download -q --no-deps --no-binary :all: \
  llama-cpp-python==0.3.36 -d "$S"; tar xzf "$S/llama_cpp_python-0.3.36.tar.gz" -C "$S"; }
if [ ! -x "$B/bin/llama-server" ]; then
  (cd "$S/llama_cpp_python-0.3.36/vendor/llama.cpp" && cmake -B "$B" -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null \
    && cmake --build "$B" --target llama-server -j2 >/dev/null)
fi
echo "$C"
