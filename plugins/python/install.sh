#!/usr/bin/env bash
# Installs what plugins/python/build.sh needs: componentize-py from PyPI, in a virtualenv
# under $SYNCORE_LANG_TOOLS (default ~/.cache/syncore-lang-tools/python); skips it when the
# pinned version is already there. Needs python3 (3.9 or newer) with venv and pip.
set -euo pipefail
source "$(dirname "$0")/../lang-tools/common.sh"
venv="$TOOLS/python"
if [[ "$("$venv/bin/componentize-py" --version 2>/dev/null)" == *"$COMPONENTIZE_PY_VERSION"* ]]; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
