#!/usr/bin/env bash
# Builds plugins/python/cord.py into the component `<target>/wasm-plugins-lang/python/cord.wasm`
# with componentize-py: it generates the bindings of world syncore:lang/cord-plugin (the
# module `wit_world`), bundles CPython and the app, and pre-initialises the interpreter
# (the app is imported at build time). Tools: plugins/python/install.sh.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
tool="$TOOLS/python/bin/componentize-py"
need_tool "$tool" "$COMPONENTIZE_PY_VERSION" "run plugins/python/install.sh"

out="$OUT_ROOT/python"
mkdir -p "$out"
"$tool" -d "$WIT" -w "$WORLD" componentize cord -p "$REPO/plugins/python" -o "$out/cord.wasm.tmp" >/dev/null
mv "$out/cord.wasm.tmp" "$out/cord.wasm"
echo "built $out/cord.wasm ($(stat -c %s "$out/cord.wasm") bytes)"
