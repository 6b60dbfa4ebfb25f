#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one: README's command 2, and what
# .ci/run runs. It installs what is missing (each step is skipped when already done), then
# runs every test:
#   1. the Debian packages of scripts/debian-packages.txt (apt-get, as root or with sudo);
#   2. the wasm32-wasip2 Rust target (the WASM plugins of tests/wasm.rs);
#   3. the Python, JavaScript and C plugin toolchains (plugins/<language>/install.sh) and
#      their components (plugins/<language>/build.sh), for tests/languages.rs;
#   4. cargo-fuzz (`cargo install cargo-fuzz --locked`), for the bounded fuzzing;
# then the plugin SDK's tests, bounded fuzzing (fuzz/smoke.sh: every target for
# $SYNCORE_FUZZ_SECONDS seconds, default 20; a build failure or a finding fails), and
# `cargo test --workspace`. Any failure stops it with a non-zero exit.
#
#   scripts/test.sh                  # install what is missing, run everything
#   scripts/test.sh --install-only   # only the installs
set -euo pipefail
cd "$(dirname "$0")/.."
# A suite run builds once: incremental caches would only add gigabytes to the disk.
export CARGO_INCREMENTAL=0
step() { printf '\n== %s\n' "$*"; }

step "Debian packages (scripts/debian-packages.txt)"
missing=()
while read -r package probe _; do
    [[ -z "$package" || "$package" == \#* ]] && continue
    if [[ -n "$probe" && "$probe" != \#* ]]; then
        if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] && continue; else command -v "$probe" >/dev/null && continue; fi
    fi
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && continue
    missing+=("$package")
done <scripts/debian-packages.txt
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || { echo "error: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all present"
fi

step "Rust target wasm32-wasip2"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

step "Plugin toolchains and components (C, JavaScript, Python)"
for lang in c js python; do
    "plugins/$lang/install.sh"
    "plugins/$lang/build.sh"
done

step "cargo-fuzz"
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo fuzz --version

if [[ "${1:-}" == --install-only ]]; then
    exit 0
fi

step "Plugin SDK tests"
# The SDK lives in the plugins' own workspace (built for wasm32-wasip2 by the tests); its
# unit tests and guide run natively here.
cargo test --manifest-path plugins/Cargo.toml -p syncore-plugin-sdk \
    --target-dir target/wasm-plugins

step "Bounded fuzzing (fuzz/smoke.sh)"
bash fuzz/smoke.sh "${SYNCORE_FUZZ_SECONDS:-20}"

step "cargo test --workspace"
cargo test --workspace
