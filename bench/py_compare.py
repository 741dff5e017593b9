"""Helpers of compare-python.sh (standard library only, except `replay`,
which runs inside the throw-away venv with AutoZeekWatch installed).

  prepare SRC_TSV[.gz] DST_JSON[.gz] SHARED_TOOLS_DIR
      Zeek TSV -> Zeek JSON lines (the team's zeek_tsv_to_json conversion),
      filling `local_orig`/`local_resp` with false where Zeek left them unset:
      AutoZeekWatch 0.1.3 crashes on unset ones (`astype(int)` of None).
      Prints how many records were filled.
  replay NIDS_DIR MODEL JSON_IN SCORES_OUT PER_LINE
      Scores JSON_IN the way AutoZeekWatch's infer.py scores each line of the
      live file it follows (`score_json(kit, line, "conn")`): its CLI can
      only follow `<log-dir>/current/conn.log` forever, so its library is
      driven instead. The rate is timed on the first PER_LINE lines, one by
      one; all lines are then scored with the same functions in one batch
      (checked equal to the per-line scores). Writes JSON lines with uid,
      module and score, and prints the rates.
  table WORKDIR
      Reads the measurements compare-python.sh left in WORKDIR and prints the
      markdown table.
"""
import gzip
import json
import os
import sys
import time


def opener(path, mode):
    return gzip.open(path, mode + "t", newline="") if path.endswith(".gz") else open(path, mode, newline="")


def prepare(src, dst, tools_dir):
    sys.path.insert(0, tools_dir)
    from zeek_tsv_to_json import conv, unescape  # the team's converter

    sep, set_sep, empty, unset = "\t", ",", "(empty)", "-"
    fields = types = None
    n = filled = 0
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    with opener(src, "r") as f, opener(dst, "w") as out:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            if line.startswith("#"):
                if line.startswith("#separator"):
                    sep = unescape(line.split(" ", 1)[1])
                    continue
                parts = line.split(sep)
                key = parts[0]
                if key == "#set_separator":
                    set_sep = parts[1]
                elif key == "#empty_field":
                    empty = parts[1]
                elif key == "#unset_field":
                    unset = parts[1]
                elif key == "#fields":
                    fields = parts[1:]
                elif key == "#types":
                    types = parts[1:]
                continue
            rec = {}
            for name, t, v in zip(fields, types, line.split(sep)):
                c = conv(t, v, set_sep, empty, unset)
                if c is not None:
                    rec[name] = c
            n += 1
            if "local_orig" not in rec or "local_resp" not in rec:
                filled += 1
                rec.setdefault("local_orig", False)
                rec.setdefault("local_resp", False)
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
    print(f"{src}: {n} records, {filled} with local_orig/local_resp filled as false")


def replay(nids_dir, model_path, src, dst, per_line):
    sys.path.insert(0, nids_dir)
    sys.argv = [sys.argv[0]]
    import logging

    from joblib import load

    import infer  # AutoZeekWatch's own module (score_json, preprocess_json_conn)

    logging.disable(logging.INFO)
    kit = load(model_path)
    with opener(src, "r") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    # Its own path, one line at a time (what infer.py does per line of the
    # followed file), timed on the first `per_line` lines: at its rate the
    # whole test half would take many minutes.
    per_line = min(int(per_line), len(lines))
    started = time.perf_counter()
    one_by_one = [float(infer.score_json(kit, line, "conn")["anomaly_score"]) for line in lines[:per_line]]
    line_seconds = time.perf_counter() - started
    # Every line, for ROC-AUC/AP: the same preprocessing on all lines at once
    # (its features do not depend on the other rows: fixed column lists), then
    # the same kit.score_partial per row; checked equal to the per-line scores.
    started = time.perf_counter()
    features = infer.preprocess_json_conn("\n".join(lines))
    scores = [float(kit.score_partial(x)) for x in features]
    batch_seconds = time.perf_counter() - started
    diff = max((abs(a - b) for a, b in zip(one_by_one, scores)), default=0.0)
    if diff > 1e-9 * max(1.0, max(scores)):
        sys.exit(f"batch and per-line scores differ by {diff}: the batch shortcut is not valid")
    with open(dst, "w") as out:
        for line, score in zip(lines, scores):
            out.write(json.dumps({"uid": json.loads(line)["uid"], "module": "CONN", "score": score}) + "\n")
    print(json.dumps({
        "records": len(lines),
        "per_line_records": per_line,
        "per_line_seconds": line_seconds,
        "records_per_second": per_line / line_seconds,
        "batch_records_per_second": len(lines) / batch_seconds,
        "max_abs_diff_per_line_vs_batch": diff,
    }))


def parse_time(path):
    """Wall seconds and peak RSS (MiB) from `/usr/bin/time -v`."""
    wall = rss = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("Elapsed (wall clock) time"):
                v = line.rsplit(" ", 1)[1]
                parts = [float(p) for p in v.split(":")]
                wall = 0.0
                for p in parts:
                    wall = wall * 60 + p
            elif line.startswith("Maximum resident set size"):
                rss = int(line.rsplit(" ", 1)[1]) / 1024
    return wall, rss


def table(work):
    def t(name):
        return parse_time(os.path.join(work, name + ".time"))

    def j(name):
        with open(os.path.join(work, name)) as f:
            return json.load(f)

    def metrics(name):
        m = j(name)[0]["metrics"]
        return m["roc_auc"], m["average_precision"]

    info = j("info.json")
    n_dev = info["dev_test_records"]
    py_train, rs_train = t("py-train-mh"), t("rs-train-mh")
    py_replay, rs_replay = t("py-replay-dev"), t("rs-replay-dev")
    py_loop = j("py-replay-dev.json")
    py_auc = metrics("py-eval-dev.json")
    py_auc_scaled = metrics("py-eval-dev-scaled.json")
    rs_auc = metrics("rs-eval-dev.json")
    rows = [
        ("training on missing_host conn, {:,} records: wall time".format(info["mh_records"]),
         "%.1f s" % py_train[0], "%.1f s" % rs_train[0]),
        ("training: peak memory (max RSS)", "%.0f MiB" % py_train[1], "%.0f MiB" % rs_train[1]),
        ("replay scoring of the dev-set test half, {:,} records: records/s".format(n_dev),
         "{:,.1f} (its per-line path, first {:,} records)".format(py_loop["records_per_second"], py_loop["per_line_records"]),
         "{:,.0f} (whole run, model load included)".format(n_dev / rs_replay[0])),
        ("replay: peak memory (max RSS)", "%.0f MiB (the run holds all %s records)" % (py_replay[1], format(n_dev, ",")), "%.0f MiB" % rs_replay[1]),
        ("dev set, defaults: ROC-AUC / average precision", "%.3f / %.3f" % py_auc, "%.4f / %.4f" % rs_auc),
        ("dev set, Python grace periods scaled to the data (%s): ROC-AUC / AP" % info["scaled"],
         "%.3f / %.3f" % py_auc_scaled, "n/a"),
    ]
    print("| %s | AutoZeekWatch 0.1.3 (Python %s) | autozeekwatch %s (Rust) |" % (info["machine"], info["python"], info["crate"]))
    print("|---|---|---|")
    for r in rows:
        print("| %s | %s | %s |" % r)
    print()
    print("Measured %s on %s." % (info["date"], info["machine_long"]))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "replay":
        replay(*sys.argv[2:7])
    elif cmd == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
