#!/usr/bin/env bash
# How the azw-eval fixtures in this folder were made from ../shared/data (the
# team's corpus of real Zeek logs; see SOURCES.md for origins and licenses).
# Kept for provenance; the fixtures are committed and tests do not run this.
# `iot23-real-lines.conn.log.labeled` is not made here: see SOURCES.md.
set -eu  # no pipefail: `head` closes the pipe early on purpose
src=${1:-../../../../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
ctu="$src/stratosphere-idps-comparison-tool/CTU-Malware-Capture-Botnet-4/ground_truth/conn.log.labeled"
# The 8 header lines and the first 400 records, unchanged.
head -n 408 "$ctu" > ctu4-conn.log.labeled
# The same rows in IoT-23's layout: the last three columns (tunnel_parents,
# label, detailedlabel) joined by three spaces in the header, the types and
# every row; an empty detailed label becomes IoT-23's `-`.
python3 - ctu4-conn.log.labeled ctu4-iot23-layout.conn.log.labeled <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
with open(src) as f, open(dst, "w") as out:
    for line in f:
        cols = line.rstrip("\n").split("\t")
        if line.startswith("#fields"):
            cols = cols[:-3] + ["tunnel_parents   label   detailed-label"]
        elif line.startswith("#types"):
            cols = cols[:-3] + ["   ".join(cols[-3:])]
        elif not line.startswith("#"):
            tunnel, label, detail = cols[-3:]
            cols = cols[:-3] + ["   ".join([tunnel, label, "-" if detail == "(empty)" else detail])]
        out.write("\t".join(cols) + "\n")
PY
