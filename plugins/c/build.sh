#!/usr/bin/env bash
# Builds plugins/c/cord.c into the component `<target>/wasm-plugins-lang/c/cord.wasm`:
#   1. `wit-bindgen c` writes the bindings of world syncore:lang/cord-plugin;
#   2. clang 14 (`--target=wasm32-wasi`, a reactor: no main) compiles and links a core
#      module against wasi-libc (Debian's clang 14 has no wasm32-wasip2 target);
#   3. `wasm-tools component new --adapt` wraps it into a component, translating its WASI
#      preview1 imports to preview2 with wasmtime 48's adapter (crate
#      wasi-preview1-component-adapter-provider, written out by plugins/c/adapter).
# Tools: plugins/c/install.sh.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
hint="run plugins/c/install.sh"
need_tool wit-bindgen "$WIT_BINDGEN_VERSION" "$hint"
need_tool wasm-tools "$WASM_TOOLS_VERSION" "$hint"
need_tool clang "clang version" "$hint"
[ -f /usr/lib/wasm32-wasi/libc.a ] || { echo "error: wasi-libc is missing: $hint" >&2; exit 1; }

out="$OUT_ROOT/c"
work="$out/build"
rm -rf "$work"
mkdir -p "$work/bindings"
wit-bindgen c "$WIT" --world "$WORLD" --out-dir "$work/bindings" >"$work/wit-bindgen.log" 2>&1 ||
    { cat "$work/wit-bindgen.log" >&2; exit 1; }
clang --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Wextra -Werror \
    -I "$work/bindings" \
    "$REPO/plugins/c/cord.c" "$work/bindings/cord_plugin.c" \
    "$work/bindings/cord_plugin_component_type.o" \
    -Wl,--strip-all -o "$work/core.wasm"
cargo run --quiet --release --locked \
    --manifest-path "$REPO/plugins/c/adapter/Cargo.toml" \
    --target-dir "$OUT_ROOT/tools" -- "$work/wasi_snapshot_preview1.reactor.wasm"
wasm-tools component new "$work/core.wasm" \
    --adapt "wasi_snapshot_preview1=$work/wasi_snapshot_preview1.reactor.wasm" \
    -o "$work/cord.wasm"
wasm-tools validate --features component-model "$work/cord.wasm"
mv "$work/cord.wasm" "$out/cord.wasm"
echo "built $out/cord.wasm ($(stat -c %s "$out/cord.wasm") bytes)"
