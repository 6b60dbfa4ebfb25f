#!/usr/bin/env bash
# Installs what plugins/c/build.sh needs; skips what is already there.
#   - Debian's clang 14, lld (wasm-ld), wasi-libc and the wasm32 compiler-rt builtins;
#   - wit-bindgen-cli and wasm-tools from crates.io (`cargo install --locked`).
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"

packages=()
command -v clang >/dev/null || packages+=(clang)
command -v wasm-ld >/dev/null || packages+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || packages+=(wasi-libc)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null ||
    packages+=(libclang-rt-14-dev-wasm32)
if ((${#packages[@]})); then
    echo "installing Debian packages: ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi
cargo install --locked --quiet "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
cargo install --locked --quiet "wasm-tools@$WASM_TOOLS_VERSION"
