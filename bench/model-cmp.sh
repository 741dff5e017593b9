#!/usr/bin/env bash
# Whether two builds of azw-train make the same models: trains with both on
# the same logs and compares the model files byte for byte, leaving out
# the two values that say when and how long (`created`,
# `training.seconds`), which differ between any two runs.
#
#   bash bench/model-cmp.sh BASE_BIN_DIR NEW_BIN_DIR azw-train-args...
#   bash bench/model-cmp.sh /work/main/target/release target/release \
#       --log-dir examples/logs --modules ALL --min-records 20
set -euo pipefail
base=$1 new=$2
shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$base/azw-train" "$@" --model-dir "$out/base" -q >/dev/null
"$new/azw-train" "$@" --model-dir "$out/new" -q >/dev/null
strip() { sed -E 's/"created": ?"[^"]*"/"created":""/; s/"seconds": ?[0-9.eE+-]+/"seconds":0/; s/"checksum": ?"[^"]*"/"checksum":""/' "$1"; }
status=0
for f in "$out"/base/*.model.json; do
    name=$(basename "$f")
    if [[ ! -f $out/new/$name ]]; then
        echo "$name: missing in the new build's models"; status=1; continue
    fi
    if cmp -s <(strip "$f") <(strip "$out/new/$name"); then
        echo "$name: identical ($(stat -c %s "$f") bytes)"
    else
        echo "$name: DIFFERENT"; status=1
    fi
done
[[ $(ls "$out/new" | wc -l) == $(ls "$out/base" | wc -l) ]] || { echo "different model counts"; status=1; }
exit $status
