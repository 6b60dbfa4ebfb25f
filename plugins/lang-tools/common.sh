# Shared by plugins/{python,js,c}/{install,build}.sh: where things go, and the pinned tools.
#
# Components go to `$CARGO_TARGET_DIR/wasm-plugins-lang/<language>/cord.wasm` (default
# target/ of the repository), where tests/languages.rs and benches/languages.rs find them.
# Tools that do not live in the repository go under `$SYNCORE_LANG_TOOLS` (default
# ~/.cache/syncore-lang-tools) or `cargo install`'s bin directory, so they survive fresh clones.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET" in /*) ;; *) TARGET="$REPO/$TARGET" ;; esac
OUT_ROOT="$TARGET/wasm-plugins-lang"
TOOLS="${SYNCORE_LANG_TOOLS:-$HOME/.cache/syncore-lang-tools}"
WIT="$REPO/plugins/lang-wit"
WORLD="cord-plugin"

# Pinned versions: the wit-bindgen family of plugin-sdk (0.46 / wasm-tools 0.239), the
# adapter of wasmtime 48 (the host's wasmtime), and the language toolchains they were tested with.
WIT_BINDGEN_VERSION="0.46.0"
WASM_TOOLS_VERSION="1.239.0"
COMPONENTIZE_PY_VERSION="0.25.1"

# Fails with the install command when a tool is missing or has another version.
need_tool() { # name version-substring install-hint
    local name="$1" version="$2" hint="$3" found
    if ! found="$("$name" --version 2>/dev/null)"; then
        echo "error: \`$name\` is not installed: $hint" >&2
        exit 1
    fi
    if [[ "$found" != *"$version"* ]]; then
        echo "error: \`$name --version\` says \"$found\", expected $version: $hint" >&2
        exit 1
    fi
}
