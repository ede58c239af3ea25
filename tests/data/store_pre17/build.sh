#!/usr/bin/env bash
# Rebuild this fixture with compsafe at c4966b3 (the commit before issue 17's registries).
# bash tests/data/store_pre17/build.sh [BUILD_DIR]   (PYTHON=..., OLD_SRC=checkout of c4966b3)
# It checks c4966b3 out in a throwaway worktree, builds the store there with that version
# and writes store.sql, report/index.html, report/data/**/*.csv, findings.md and
# findings/paired.csv here (figures and tidy.parquet are not kept: binary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
py=${PYTHON:-$repo/.venv/bin/python}
build=${1:-$(mktemp -d)}
old=${OLD_SRC:-}  # an existing checkout of c4966b3, or a throwaway worktree
if [ -z "$old" ]; then
  old=$build/src-c4966b3
  git -C "$repo" worktree add --detach "$old" c4966b3
  trap 'git -C "$repo" worktree remove --force "$old"' EXIT
fi
test "$(git -C "$old" rev-parse HEAD)" = "$(git -C "$repo" rev-parse c4966b3)"
export PYTHONPATH=$old/src
cs() { "$py" -c 'import sys; from compsafe.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
cd "$build"
cp "$here/sweep.yaml" sweep.yaml
"$py" "$here/make_model.py" tiny-llama
cs data pull --from "$repo/../shared/data" --data-dir data --dataset bbq --dataset unqover \
  --dataset realtoxicityprompts --dataset wikitext2 --dataset aave_sae_pairs \
  --dataset aave_corpora --dataset twitteraae
cs sweep sweep.yaml
cs report run --out report
cs report run --findings findings.md
rm -rf "$here/report" "$here/findings"
mkdir -p "$here/report/data/wide" "$here/findings"
cp report/index.html "$here/report/"
cp report/data/*.csv "$here/report/data/"
cp report/data/wide/*.csv "$here/report/data/wide/"
cp findings.md "$here/findings.md"
cp findings/*.csv "$here/findings/"
"$py" - "$build/run/compsafe.sqlite" "$here/store.sql" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for line in conn.iterdump():
        f.write(line + "\n")
    # iterdump leaves out the schema version (store/schema.py keeps it in user_version)
    f.write(f"PRAGMA user_version = {conn.execute('PRAGMA user_version').fetchone()[0]};\n")
PY
echo "fixture written to $here (build folder: $build)"
