#!/usr/bin/env bash
# How the reader fixtures in this folder were cut from ../shared/data (the
# team's corpus of real Zeek logs; see SOURCES.md for origins and licenses).
# Kept for provenance; the fixtures are committed and tests do not run this.
set -eu  # no pipefail: `head` closes the pipe early on purpose
src=${1:-../../../../shared/data}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
cp "$src/rita-activecm/truncated/conn.log" rita-truncated-conn.log
cp "$src/rita-activecm/truncated/conn_json.log" rita-truncated-conn-json.log
cp "$src/rita-activecm/text_file/conn.log" rita-text-file.log
cp "$src/rita-activecm/has_unknown_field/http.log" rita-has-unknown-field-http.log
cp "$src/slips-stratosphereips/test10-mixed-zeek-dir/conn.log" slips-stray-tab-conn.log
cp "$src/slips-stratosphereips/test9-mixed-zeek-dir/arp.log" slips-crlf-arp.log
cp "$src/zat-supercowpowers/http.log.corrupt.gz" zat-http.log.corrupt.gz
# The literal `#separator \t` header with trailing tabs: header and 40 records.
zcat "$src/rita-activecm/dnscat2-ja3-strobe-agent/http.log.gz" | head -n 48 > rita-literal-tab-http.log
# TSV/JSON pairs of the same records (the first 300 of each).
zcat "$src/rita-activecm/valid_tsv/http.log.gz" | head -n 308 | gzip -n > rita-valid-http.tsv.gz
zcat "$src/rita-activecm/valid_json/http.log.gz" | head -n 300 | gzip -n > rita-valid-http.json.gz
for log in dns ssl; do
  zcat "$src/zed-sample-data/zeek-default/$log.log.gz" | head -n 308 | gzip -n > "zed-$log.tsv.gz"
  zcat "$src/zed-sample-data/zeek-json/$log.json.gz" | head -n 300 | gzip -n > "zed-$log.json.gz"
done
