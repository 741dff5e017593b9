#!/usr/bin/env bash
# Training time on one core and on two: `azw-train --modules CONN` on the
# 1,059,180-record conn TSV of bench/perf.sh, pinned to processor 0
# (`taskset -c 0`) and free to use every processor, ROUNDS times in turn;
# prints the seconds of each run (wall and processor) and the ratio of the
# best of each (issue #16's target: two threads at least 1.7x one). With
# BASE=DIR (a folder holding another build's azw-train, e.g. main's), that
# build runs both ways too, in the same rounds, so that the two compare
# like with like on a shared machine. The load is printed before each
# round: another process's work inflates the two-core time most.
#
#   bash bench/train-cores.sh
#   BASE=/tmp/main-bin ROUNDS=2 bash bench/train-cores.sh
#
# Env: LOG (the conn log; default target/perf-data/logs/conn.log, made by
# bench/perf.sh), ROUNDS (default 2), BIN (default target/release, built
# by `cargo build --release` unless set).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log=${LOG:-$root/target/perf-data/logs/conn.log}
rounds=${ROUNDS:-2}
if [[ -z ${BIN:-} ]]; then
    (cd "$root" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$root/target}/release
fi
[[ -s $log ]] || { echo "no $log: run bench/perf.sh once, or set LOG" >&2; exit 1; }
# azw-train reads a folder: the log alone in one (a link, not a copy).
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/logs"
ln -s "$(realpath "$log")" "$dir/logs/conn.log"

seconds() { # "wall cpu" of one run of "$@"
    local t0 t1 cpu
    t0=$(date +%s.%N)
    cpu=$( { TIMEFORMAT='%U %S'; time "$@" >/dev/null 2>&1; } 2>&1 )
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v c="$cpu" 'BEGIN { split(c, u, " "); print b - a, u[1] + u[2] }'
}
train() { # binary-dir [taskset args...]
    local bin=$1
    shift
    "$@" "$bin/azw-train" --log-dir "$dir/logs" --modules CONN --model-dir "$dir/models" -q
}
declare -A best
note() { # name "wall cpu"
    local name=$1 w c
    read -r w c <<<"$2"
    if [[ -z ${best[$name]:-} ]] || awk "BEGIN { exit !($w < ${best[$name]}) }"; then
        best[$name]=$w
    fi
    printf '  %-16s %6.2f s wall  %6.2f s cpu\n' "$name" "$w" "$c"
}

echo "$(grep -vc '^#' "$log") records, $(nproc) processors"
builds=(new)
[[ -n ${BASE:-} ]] && builds+=(base)
for round in $(seq "$rounds"); do
    echo "round $round, load $(cut -d' ' -f1-3 /proc/loadavg)"
    for b in "${builds[@]}"; do
        bin=$BIN
        [[ $b == base ]] && bin=$BASE
        note "$b, 1 core" "$(seconds train "$bin" taskset -c 0)"
        note "$b, 2 cores" "$(seconds train "$bin")"
    done
done
echo "best of $rounds, load now $(cut -d' ' -f1-3 /proc/loadavg):"
for b in "${builds[@]}"; do
    one=${best["$b, 1 core"]} two=${best["$b, 2 cores"]}
    printf '  %-5s 1 core %6.2f s, 2 cores %6.2f s: %.2fx\n' "$b" "$one" "$two" \
        "$(awk "BEGIN { print $one / $two }")"
done
