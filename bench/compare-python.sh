#!/usr/bin/env bash
# Side by side: the Python AutoZeekWatch 0.1.3 (from PyPI, with pysad 0.2.0)
# and this crate, on the same data, in one run; prints one markdown table.
#
#   bench/compare-python.sh            # needs ../shared (or AZW_SHARED=DIR)
#   AZW_COMPARE_KEEP=1 bench/compare-python.sh   # keep the work folder
#
# Not run by CI: it installs packages from PyPI into a throw-away virtual
# environment (a temporary folder, removed at the end) and takes a few
# minutes. What it measures:
#   - training time and peak memory (max RSS, /usr/bin/time -v) on RITA's
#     missing_host conn logs (three days, hourly gz files; converted to Zeek
#     JSON for the Python tool, which reads only JSON);
#   - replay scoring rate and peak memory on the dev set's test half;
#   - ROC-AUC and average precision on the dev set built from
#     CTU-Malware-Capture-Botnet-4 by shared/tools/make_eval_set.py (train on
#     the benign rows of the first half, score the second), both tools'
#     scores measured by the same code (azw-eval --scores).
#
# Pins: AutoZeekWatch 0.1.3 pins pandas 1.4.2, which has no wheel for Python
# 3.11, so it is installed without its dependencies and then with pandas
# 1.5.3 and the other pins it declares (numpy 1.23.5, scipy 1.10.0,
# scikit-learn 1.3.2, pyod 1.1.0, combo 0.1.3, joblib 1.3.2, tailer 0.4.1).
# mlflow, matplotlib and seaborn, which it declares but never imports, are
# left out.
#
# The Python tool crashes on records whose local_orig/local_resp are unset
# (Zeek without Site::local_nets, as in the dev set): for it, and only for
# it, those are filled with false (`py_compare.py prepare` says how many).
# Its infer.py can only follow <log-dir>/current/conn.log forever, so its
# replay is its own score_json() driven line by line (`py_compare.py
# replay`).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
shared=${AZW_SHARED:-$repo/../shared}
data=$shared/data
tools=$shared/tools
ctu=$data/stratosphere-idps-comparison-tool/CTU-Malware-Capture-Botnet-4/ground_truth/conn.log.labeled
mh=$data/rita-activecm/missing_host
for need in "$ctu" "$mh" "$tools/make_eval_set.py"; do
  [ -e "$need" ] || { echo "missing $need: set AZW_SHARED to the team's shared folder" >&2; exit 1; }
done
if [ ! -x /usr/bin/time ]; then
  echo "/usr/bin/time is missing: installing Debian's time package" >&2
  apt-get install -y time >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/azw-compare.XXXXXX")
cleanup() {
  if [ "${AZW_COMPARE_KEEP:-0}" = 1 ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
step() { echo "== $*" >&2; }
# measure NAME CMD...: runs CMD under /usr/bin/time -v; output in $work/NAME.*
measure() {
  local name=$1
  shift
  if ! /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    echo "FAILED: $name: $*" >&2
    tail -n 30 "$work/$name.err" >&2
    exit 1
  fi
}

step "Python: throw-away venv with AutoZeekWatch 0.1.3 and pysad 0.2.0"
python3 -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install --quiet --disable-pip-version-check --no-deps autozeekwatch==0.1.3 pysad==0.2.0
"$py" -m pip install --quiet --disable-pip-version-check \
  numpy==1.23.5 scipy==1.10.0 scikit-learn==1.3.2 pandas==1.5.3 \
  pyod==1.1.0 combo==0.1.3 joblib==1.3.2 tailer==0.4.1
nids=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/NIDS
[ -f "$nids/train.py" ] || { echo "AutoZeekWatch's NIDS/train.py not found in the venv" >&2; exit 1; }

step "Rust: cargo build --release"
(cd "$repo" && cargo build --release --locked --bins --quiet)
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target/release

step "data: missing_host conn to JSON for the Python tool; the dev set"
mh_records=0
for f in "$mh"/*/conn.*.log.gz; do
  day=$(basename "$(dirname "$f")")
  out=$(python3 "$here/py_compare.py" prepare "$f" "$work/mh-json/$day/$(basename "$f")" "$tools")
  mh_records=$((mh_records + $(echo "$out" | sed -E 's/.*: ([0-9]+) records.*/\1/')))
  case $out in *" 0 with local"*) ;; *) echo "  $out" >&2 ;; esac
done
python3 "$tools/make_eval_set.py" "$ctu" "$work/dev" >&2
python3 "$here/py_compare.py" prepare "$work/dev/train/2020-01-01/conn.log" "$work/dev-py/train/2020-01-01/conn.log.gz" "$tools" | sed 's/^/  Python only: /' >&2
python3 "$here/py_compare.py" prepare "$work/dev/test/conn.log" "$work/dev-py/test/conn.log" "$tools" | sed 's/^/  Python only: /' >&2
dev_train=$(grep -vc '^#' "$work/dev/train/2020-01-01/conn.log")
dev_test=$(grep -vc '^#' "$work/dev/test/conn.log")

step "training on missing_host ($mh_records conn records): Python, then Rust"
mkdir -p "$work/py-mh"
measure py-train-mh env -C "$work/py-mh" "$py" "$nids/train.py" --log-dir "$work/mh-json" --modules CONN
measure rs-train-mh "$bin/azw-train" --log-dir "$mh" --modules CONN --model-dir "$work/rs-mh" --quiet

step "dev set ($dev_train benign training rows, $dev_test test rows): Rust"
measure rs-train-dev "$bin/azw-train" --log-dir "$work/dev/train" --modules CONN --model-dir "$work/rs-dev" --quiet
measure rs-replay-dev "$bin/azw-infer" --replay "$work/dev/test" --modules CONN --model-dir "$work/rs-dev" --output "$work/rs-dev-scores.json" --quiet
"$bin/azw-eval" --scores "$work/rs-dev-scores.json" --labels "$work/dev/labels.tsv" --modules CONN --json --no-plot --quiet >"$work/rs-eval-dev.json"

step "dev set: Python with its defaults"
mkdir -p "$work/py-dev"
measure py-train-dev env -C "$work/py-dev" "$py" "$nids/train.py" --log-dir "$work/dev-py/train" --modules CONN
measure py-replay-dev env -C "$work/py-dev" "$py" "$here/py_compare.py" replay "$nids" "$work/py-dev/conn_kit.joblib" "$work/dev-py/test/conn.log" "$work/py-dev-scores.json" 1000
tail -n 1 "$work/py-replay-dev.out" >"$work/py-replay-dev.json"
"$bin/azw-eval" --scores "$work/py-dev-scores.json" --labels "$work/dev/labels.tsv" --modules CONN --json --no-plot --quiet >"$work/py-eval-dev.json"

# The Python defaults (feature-map grace 5,000, detector grace 50,000) are
# sized for far more records than the dev set's training half; scaled: the
# feature map on the first 10% of the training rows, the detector on the rest.
fm=$((dev_train / 10))
ad=$((dev_train - fm))
step "dev set: Python with grace periods scaled to the data ($fm + $ad)"
mkdir -p "$work/py-dev-scaled"
measure py-train-dev-scaled env -C "$work/py-dev-scaled" "$py" "$nids/train.py" --log-dir "$work/dev-py/train" --modules CONN \
  --grace-feature-mapping "$fm" --grace-anomaly-detector "$ad"
measure py-replay-dev-scaled env -C "$work/py-dev-scaled" "$py" "$here/py_compare.py" replay "$nids" "$work/py-dev-scaled/conn_kit.joblib" "$work/dev-py/test/conn.log" "$work/py-dev-scaled-scores.json" 1000
"$bin/azw-eval" --scores "$work/py-dev-scaled-scores.json" --labels "$work/dev/labels.tsv" --modules CONN --json --no-plot --quiet >"$work/py-eval-dev-scaled.json"

cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
python3 - "$work/info.json" <<PY
import json, sys
json.dump({
    "date": "$(date -u +%Y-%m-%d)",
    "machine": "$(nproc) cores",
    "machine_long": "$(nproc) cores ($cpu), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)",
    "python": "$("$py" -c 'import platform; print(platform.python_version())')",
    "crate": "$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')",
    "mh_records": $mh_records,
    "dev_test_records": $dev_test,
    "scaled": "feature map $fm, detector $ad",
}, open(sys.argv[1], "w"))
PY
step "done"
echo
python3 "$here/py_compare.py" table "$work"
echo
echo "Python: AutoZeekWatch's train.py with its defaults (learning rate 0.001; KitNET trains on the first"
echo "feature-map + detector grace records only), replay = its score_json() per line; local_orig/local_resp"
echo "filled with false for it where unset. Rust: azw-train (defaults: learning rate 0.03, 3 epochs),"
echo "azw-infer --replay, azw-eval --scores; both tools' ROC-AUC/AP from the same azw-eval code, per uid."
