#!/usr/bin/env bash
# Builds plugins/js/cord.js into the component `<target>/wasm-plugins-lang/js/cord.wasm` with
# componentize-js: it generates the bindings of world syncore:lang/cord-plugin, embeds the
# module (and the module it imports, syncore.js, read from plugins/js at build time) in
# StarlingMonkey (SpiderMonkey) and pre-initialises the engine with Wizer.
# `http` stays on: it is StarlingMonkey's `fetch`, over wasi:http/outgoing-handler, which
# syncore.js uses to reach the inventory. WASI features the plugin does not use are left out
# (random, clocks, fetch-event); stdio stays, so that an uncaught error's message reaches the
# host's captured stderr.
# Tools: plugins/js/install.sh.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
tool="$REPO/plugins/js/node_modules/.bin/componentize-js"
[ -x "$tool" ] || { echo "error: componentize-js is not installed: run plugins/js/install.sh" >&2; exit 1; }

out="$OUT_ROOT/js"
mkdir -p "$out"
# From plugins/js, so that the engine sees that directory as its root while it loads the
# modules (relative imports resolve there).
cd "$REPO/plugins/js"
"$tool" cord.js --wit "$WIT" --world-name "$WORLD" \
    --disable random clocks fetch-event -o "$out/cord.wasm.tmp" >/dev/null
mv "$out/cord.wasm.tmp" "$out/cord.wasm"
echo "built $out/cord.wasm ($(stat -c %s "$out/cord.wasm") bytes)"
