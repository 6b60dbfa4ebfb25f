#!/usr/bin/env bash
# Installs what plugins/js/build.sh needs: componentize-js (SpiderMonkey in StarlingMonkey)
# and jco from the npm registry, as pinned by plugins/js/package-lock.json, into
# plugins/js/node_modules (`npm ci`); skips it when they are already installed. Needs Node.js
# 18 or newer with npm.
set -euo pipefail
cd "$(dirname "$0")"
installed() { # package version
    [[ "$(node -p "require('./node_modules/$1/package.json').version" 2>/dev/null)" == "$2" ]]
}
if installed @bytecodealliance/componentize-js 0.22.0 && installed @bytecodealliance/jco 1.35.0 &&
    installed @bytecodealliance/preview2-shim 0.25.0; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
