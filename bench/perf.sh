#!/usr/bin/env bash
# Whole-process throughput on one million conn records, in records/s:
# reading only (`azw-train --dry-run`), and `azw-infer --replay` with
# --threads 1 and 2, and pinned to one core (`taskset -c 0`, --threads 1:
# on one core the fastest; the in-order path without threads is slower,
# it scores a record at a time); the ratio of two cores to one is issue
# 16's "two threads / one thread", measured as bench/train-cores.sh does
# for training; with BASE=DIR (a folder holding another build's
# azw-train and azw-infer, e.g. main's), that build's replay too, the runs
# alternated in the same session so that the ratios compare like with like
# on a shared machine. BASE's model is trained by BASE's own azw-train (an
# older build reads its own model format).
#
# With TABLES=DIR (`azw-train --tables`), this build trains and scores
# with those feature tables: TABLES=bench/tables-issue16 is the conn table
# of the build issue 16 measured (no context columns), so that next to
# that build (BASE) both do the same work per record:
#
#   git worktree add /tmp/issue16 417ee05
#   (cd /tmp/issue16 && cargo build --release)
#   BASE=/tmp/issue16/target/release TABLES=bench/tables-issue16 bash bench/perf.sh
#
# With REPLAY_ARGS="..." this build's replays get those arguments too
# (not BASE's, which may not know them): REPLAY_ARGS="--context-fields
# none" leaves out the context object each record carries since the
# alert work, which 417ee05's records did not have (the Community ID,
# direction and sensor cannot be left out), so that next to that build
# the output differs by those three fields only.
#
# Data: the three days of rita-activecm/missing_host conn logs (105,918
# records) concatenated ten times into one plain TSV with one header
# (1,059,180 records), built once in $WORK; the model is trained on the
# three days by this build's azw-train.
#
#   bash bench/perf.sh                       # this build only
#   BASE=/tmp/main-bin ROUNDS=3 bash bench/perf.sh
#
# Env: AZW_SHARED (default ../shared/data), WORK (default
# target/perf-data), ROUNDS (default 3), BIN (default target/release,
# built by `cargo build --release` unless set).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
shared=${AZW_SHARED:-$root/../shared/data}
work=${WORK:-$root/target/perf-data}
rounds=${ROUNDS:-3}
if [[ -z ${BIN:-} ]]; then
    (cd "$root" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$root/target}/release
fi
days=$shared/rita-activecm/missing_host
mkdir -p "$work/logs"
log=$work/logs/conn.log
if [[ ! -s $log ]]; then
    first=$(ls "$days"/2024-04-19/conn.*.log.gz | head -1)
    zcat "$first" | grep '^#' | grep -v '^#close' >"$work/header"
    for d in "$days"/2024-04-{19,20,21}; do
        for f in "$d"/conn.*.log.gz; do zcat "$f" | grep -v '^#'; done
    done >"$work/body"
    { cat "$work/header"; for _ in $(seq 10); do cat "$work/body"; done; } >"$log.tmp"
    mv "$log.tmp" "$log"
    rm -f "$work/body" "$work/header"
fi
records=$(grep -vc '^#' "$log")
# A model per build and choice of tables (named by checksums of the
# trainer and the tables' text: a changed build or table trains anew),
# and one per base build.
checksum() { cat "$@" | cksum | cut -d' ' -f1; }
tables=()
if [[ -n ${TABLES:-} ]]; then
    tables=(--tables "$TABLES")
    models=$work/models-$(checksum "$BIN/azw-train" "$TABLES"/*.toml)
else
    models=$work/models-$(checksum "$BIN/azw-train")
fi
if [[ ! -s $models/conn.model.json ]]; then
    "$BIN/azw-train" --log-dir "$days" --modules CONN --model-dir "$models" \
        ${tables[@]+"${tables[@]}"} -q >/dev/null
fi
if [[ -n ${BASE:-} ]]; then
    base_models=$work/models-base-$(checksum "$BASE/azw-train")
    if [[ ! -s $base_models/conn.model.json ]]; then
        "$BASE/azw-train" --log-dir "$days" --modules CONN --model-dir "$base_models" -q >/dev/null
    fi
fi

# "wall cpu rss": seconds of wall time and of processor time (user +
# system, all threads) of one run of "$@", and its peak resident memory in
# MB (by GNU time when installed, else "?"). Processor time does not
# depend on what else the machine runs; wall time does.
seconds() {
    local t0 t1 cpu
    t0=$(date +%s.%N)
    # A failed run prints nothing (and fails): it must not pass for a
    # fast one.
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" >/dev/null 2>&1 ||
            { echo "failed: $*" >&2; return 1; }
        cpu=$(tail -1 "$work/time")
    else
        cpu="$( { TIMEFORMAT='%U %S'; time "$@" >/dev/null 2>&1; } 2>&1 ) ?" ||
            { echo "failed: $*" >&2; return 1; }
    fi
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v c="$cpu" 'BEGIN {
        split(c, u, " ")
        rss = u[3] == "?" ? "?" : sprintf("%.1f", u[3] / 1024)
        print b - a, u[1] + u[2], rss
    }'
}
rate() { awk "BEGIN { printf \"%.0f\", $records / $1 }"; }

declare -A best cpu
note() { # name "wall cpu rss": keep the best (shortest) time of each case
    local name=$1 w c m
    read -r w c m <<<"$2"
    [[ -n $w ]] || { echo "$name: the run failed" >&2; exit 1; }
    if [[ -z ${best[$name]:-} ]] || awk "BEGIN { exit !($w < ${best[$name]}) }"; then
        best[$name]=$w
        cpu[$name]=$c
    fi
    printf '  %-22s %6.2f s  %9s records/s   cpu %5.2f s  %9s records/cpu-s  peak %s MB\n' \
        "$name" "$w" "$(rate "$w")" "$c" "$(rate "$c")" "$m"
}
replay() { # binary-dir model-dir output [args...]: `seconds` of a replay
    local bin=$1 dir=$2 out=$3
    shift 3
    rm -f "$out"
    seconds "$bin/azw-infer" --replay "$log" --modules CONN --model-dir "$dir" \
        --output "$out" -q "$@"
}
# This build's extra replay arguments (word-split on purpose).
read -r -a replay_args <<<"${REPLAY_ARGS:-}"

one_core() { # output: `seconds` of this build's replay on processor 0 only
    rm -f "$1"
    seconds taskset -c 0 "$BIN/azw-infer" --replay "$log" --modules CONN \
        --model-dir "$models" --output "$1" -q --threads 1 ${replay_args[@]+"${replay_args[@]}"}
}
wall() { echo "${1%% *}"; }
rounds_ratio=()

echo "$records records, $(nproc) processors, replay arguments: ${REPLAY_ARGS:-none}, load $(cut -d' ' -f1-3 /proc/loadavg), model $models"
for round in $(seq "$rounds"); do
    echo "round $round"
    note "reader only" "$(seconds "$BIN/azw-train" --log-dir "$work/logs" --modules CONN --dry-run)"
    if [[ -n ${BASE:-} ]]; then
        note "base replay" "$(replay "$BASE" "$base_models" "$work/base.json")"
    fi
    t1=$(replay "$BIN" "$models" "$work/t1.json" --threads 1 ${replay_args[@]+"${replay_args[@]}"})
    note "replay, 1 thread" "$t1"
    t2=$(replay "$BIN" "$models" "$work/t2.json" --threads 2 ${replay_args[@]+"${replay_args[@]}"})
    note "replay, 2 threads" "$t2"
    c1=$(one_core "$work/c1.json")
    note "replay, 1 core" "$c1"
    # This round's two cores (the faster of 1 and 2 threads) / one core.
    rounds_ratio+=("$(awk -v c="$(wall "$c1")" -v a="$(wall "$t1")" -v b="$(wall "$t2")" \
        'BEGIN { m = a < b ? a : b; printf "%.2f", c / m }')")
done
cmp -s "$work/t1.json" "$work/t2.json" || { echo "outputs of 1 and 2 threads differ" >&2; exit 1; }
cmp -s "$work/t1.json" "$work/c1.json" || { echo "outputs on one core and two differ" >&2; exit 1; }
rm -f "$work/c1.json"

echo "best of $rounds (records/s of wall time; of processor time):"
for k in "reader only" "base replay" "replay, 1 thread" "replay, 2 threads" "replay, 1 core"; do
    [[ -n ${best[$k]:-} ]] && printf '  %-22s %9s  %9s\n' "$k" "$(rate "${best[$k]}")" "$(rate "${cpu[$k]}")"
done
ratio() { awk "BEGIN { printf \"%.2f\", ${best[$2]} / ${best[$1]} }"; }
echo "ratios:"
echo "  2 threads / 1 thread:      $(ratio "replay, 2 threads" "replay, 1 thread")x"
echo "  1 thread / reader only:    $(ratio "replay, 1 thread" "reader only")x"
fastest=$(awk -v a="${best["replay, 1 thread"]}" -v b="${best["replay, 2 threads"]}" 'BEGIN { print a < b ? a : b }')
echo "  $(nproc) processors / 1 core:    $(awk "BEGIN { printf \"%.2f\", ${best["replay, 1 core"]} / $fastest }")x (best of each; each round: ${rounds_ratio[*]})"
if [[ -n ${BASE:-} ]]; then
    echo "  1 thread / base replay:    $(ratio "replay, 1 thread" "base replay")x"
    echo "  2 threads / base replay:   $(ratio "replay, 2 threads" "base replay")x"
fi
