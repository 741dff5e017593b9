#!/usr/bin/env bash
# The detection dev sets of issue #12, end to end: builds them with the
# team's evaluation protocols (../shared/tools), trains with the release
# binaries' defaults, replays the test halves and measures them per uid.
#
#   bench/dev-sets.sh                 # needs ../shared (or AZW_SHARED=DIR)
#   AZW_DEV_KEEP=1 bench/dev-sets.sh  # keep the work folder
#   bench/dev-sets.sh --seed 1        # extra azw-train flags
#
# botnet4-dev: make_eval_set.py on CTU-Malware-Capture-Botnet-4's labeled
# conn log (train on the benign rows of the first half in time, test on the
# second). beacon-http: make_beacon_set.py on RITA's missing_host (train on
# 2024-04-19's http without the planted beacon, test on the next two days).
# Each report prints ROC-AUC and average precision per uid, and the
# false-positive rate measured on the benign test uids beside the one the
# model expects.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
shared=${AZW_SHARED:-$repo/../shared}
tools=$shared/tools
ctu=$shared/data/stratosphere-idps-comparison-tool/CTU-Malware-Capture-Botnet-4/ground_truth/conn.log.labeled
mh=$shared/data/rita-activecm/missing_host
for need in "$ctu" "$mh" "$tools/make_eval_set.py" "$tools/make_beacon_set.py"; do
  [ -e "$need" ] || { echo "missing $need: set AZW_SHARED to the team's shared folder" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/azw-dev.XXXXXX")
cleanup() {
  if [ "${AZW_DEV_KEEP:-0}" = 1 ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
(cd "$repo" && cargo build --release --locked --bins --quiet)
bin=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release

python3 "$tools/make_eval_set.py" "$ctu" "$work/botnet4-dev" >&2
python3 "$tools/make_beacon_set.py" "$mh" "$work/beacon-http" >&2
for set in botnet4-dev:CONN:conn beacon-http:HTTP:http; do
  IFS=: read -r name module log <<<"$set"
  d=$work/$name
  "$bin/azw-train" --log-dir "$d/train" --modules "$module" --model-dir "$d/models" --quiet "$@"
  "$bin/azw-infer" --replay "$d/test" --modules "$module" --model-dir "$d/models" --output "$d/scores.json" --quiet >/dev/null
  echo "== $name"
  "$bin/azw-eval" --scores "$d/scores.json" --labels "$d/labels.tsv" --modules "$module" \
    --model "$d/models/$log.model.json" --no-plot --quiet
done
