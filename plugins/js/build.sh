#!/usr/bin/env bash
# Builds plugins/js/cord.js into the component `<target>/wasm-plugins-lang/js/cord.wasm` with
# componentize-js: it generates the bindings of world syncore:lang/cord-plugin, embeds the
# module in StarlingMonkey (SpiderMonkey) and pre-initialises the engine with Wizer.
# WASI features the plugin does not use are left out (random, clocks, http, fetch-event);
# stdio stays, so that an uncaught error's message reaches the host's captured stderr.
# Tools: plugins/js/install.sh.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
tool="$REPO/plugins/js/node_modules/.bin/componentize-js"
[ -x "$tool" ] || { echo "error: componentize-js is not installed: run plugins/js/install.sh" >&2; exit 1; }

out="$OUT_ROOT/js"
mkdir -p "$out"
"$tool" "$REPO/plugins/js/cord.js" --wit "$WIT" --world-name "$WORLD" \
    --disable random clocks http fetch-event -o "$out/cord.wasm.tmp" >/dev/null
mv "$out/cord.wasm.tmp" "$out/cord.wasm"
echo "built $out/cord.wasm ($(stat -c %s "$out/cord.wasm") bytes)"
