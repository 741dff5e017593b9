#!/usr/bin/env bash
# Fuzzes one target (default: replay) for SECONDS (default 600) on one
# core, with libFuzzer through cargo-fuzz (nightly toolchain):
#
#   cargo install cargo-fuzz
#   bash fuzz/run.sh replay 3600
#
# Before the first run it trains the models the replay target scores with
# (on the bundled example logs, by this checkout's azw-train) and seeds
# each target's corpus from the repository's own files: the example logs
# (each log type's first lines, plain, as JSON and gzip'd), their JSON
# lines as Kafka payloads, the built-in feature tables, the trained
# models. The corpus grows in fuzz/corpus/TARGET; what fails is written
# to fuzz/artifacts/TARGET/, and `cargo +nightly fuzz run TARGET FILE`
# runs it again. A failure found is fixed in the project with a test of
# its own beside the code it was in, not only kept here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
target=${1:-replay}
seconds=${2:-600}
logs=$root/examples/logs
corpus=$here/corpus/$target
mkdir -p "$corpus" "$here/artifacts/$target"

if [[ ! -s $here/models/ssh.model.json ]]; then
    (cd "$root" && cargo build --release --quiet --bin azw-train)
    train="$root/target/release/azw-train --log-dir $logs --model-dir $here/models -q"
    $train --modules CONN,DNS,HTTP,SSL >/dev/null
    # The example ssh log has 40 records.
    $train --modules SSH --min-records 20 >/dev/null
fi

lines() { case $1 in *.gz) zcat "$1" ;; *) cat "$1" ;; esac | head -"$2"; }
if [[ -z $(ls -A "$corpus") ]]; then
    case $target in
    replay)
        # The first byte picks the log type, in the target's order.
        i=0
        for m in conn dns http ssh ssl; do
            for f in "$logs"/$m.*; do
                for n in 30 150; do
                    { printf "\\x$(printf %02x $i)"; lines "$f" $n; } >"$corpus/$(basename "$f")-$n"
                done
            done
            f=$(ls "$logs"/$m.* | grep -v json | head -1)
            { printf "\\x$(printf %02x $i)"; lines "$f" 30 | gzip -c; } >"$corpus/$m-gz"
            i=$((i + 1))
        done
        ;;
    kafka_payload)
        n=0
        for f in "$logs"/*.json*; do
            while IFS= read -r l; do
                n=$((n + 1))
                printf '%s' "$l" >"$corpus/$n"
                printf '{"%s": %s}' "$(basename "$f" | cut -d. -f1)" "$l" >"$corpus/w$n"
            done < <(lines "$f" 20)
        done
        ;;
    tables) cp "$root"/tables/*.toml "$corpus"/ ;;
    model) cp "$here"/models/*.model.json "$corpus"/ ;;
    *) echo "unknown target $target: replay, kafka_payload, tables or model" >&2; exit 1 ;;
    esac
fi

args=(
    -max_len=$([[ $target == model ]] && echo 200000 || echo 16384)
    -timeout=20 -rss_limit_mb=3000 -max_total_time="$seconds"
    # LeakSanitizer reports the thread-local channel context of the
    # replay's threads, which std frees after LSan has looked: not ours.
    -detect_leaks=0
    -artifact_prefix="$here/artifacts/$target/" -print_final_stats=1
)
cd "$here"
exec cargo +nightly fuzz run "$target" -O "$corpus" -- "${args[@]}"
