#!/usr/bin/env bash
# Builds plugins/python/cord.py into the component `<target>/wasm-plugins-lang/python/cord.wasm`
# with componentize-py: it generates the bindings of world
# syncore:lang-http/cord-http-plugin (plugins/lang-wit-http: cord-plugin plus
# wasi:http/outgoing-handler, used by syncore_sdk.py) as the module `wit_world`, bundles
# CPython and the app, and pre-initialises the interpreter (the app is imported at build
# time). Two interfaces are called `types` (syncore's and wasi:http's): their modules are
# named `types` and `http_types`. Tools: plugins/python/install.sh.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
tool="$TOOLS/python/bin/componentize-py"
need_tool "$tool" "$COMPONENTIZE_PY_VERSION" "run plugins/python/install.sh"

out="$OUT_ROOT/python"
mkdir -p "$out"
"$tool" -d "$REPO/plugins/lang-wit-http" -w cord-http-plugin \
    --import-interface-name "syncore:plugin/types@0.2.0=types" \
    --import-interface-name "wasi:http/types@0.2.12=http_types" \
    componentize cord -p "$REPO/plugins/python" -o "$out/cord.wasm.tmp" >/dev/null
mv "$out/cord.wasm.tmp" "$out/cord.wasm"
echo "built $out/cord.wasm ($(stat -c %s "$out/cord.wasm") bytes)"
