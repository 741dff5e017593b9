#!/usr/bin/env python3
"""Writes the hand-made conn_long fixture (see README.md). Deterministic."""
import os

FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration "
          "orig_bytes resp_bytes conn_state local_orig local_resp missed_bytes history "
          "orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents").split()
TYPES = ("time string addr port addr port enum string interval count count string "
         "bool bool count string count count count count set[string]").split()


def header(path):
    return "\n".join([
        "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
        "#unset_field\t-", f"#path\t{path}", "#open\t2024-03-01-00-00-00",
        "#fields\t" + "\t".join(FIELDS), "#types\t" + "\t".join(TYPES)]) + "\n"


def row(ts, uid, src, sport, dst, dport, service, dur, ob, rb, state, history):
    pkts_o, pkts_r = max(1, ob // 500), max(1, rb // 500)
    vals = [f"{ts:.6f}", uid, src, str(sport), dst, str(dport), "tcp", service,
            f"{dur:.6f}", str(ob), str(rb), state, "T", "F", "0", history,
            str(pkts_o), str(ob + 40 * pkts_o), str(pkts_r), str(rb + 40 * pkts_r), "-"]
    return "\t".join(vals) + "\n"


def written_at(line):
    """When Zeek writes a record: its start plus its duration so far."""
    cells = line.split("\t")
    return float(cells[0]) + float(cells[8])


def write(path, log_path, rows):
    rows = sorted(rows, key=written_at)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(header(log_path))
        f.writelines(rows)
        f.write("#close\t2024-03-02-00-00-00\n")


DAY = 1709251200.0  # 2024-03-01 00:00 UTC
# Training: 24 ordinary long sessions (SSH to a jump host, a mail client's
# IMAP), each reported at the package's default durations 10 min, 30 min, 1 h.
train = []
for i in range(24):
    start = DAY + i * 3000.0 + 17.25
    ssh = i % 2 == 0
    dst, port, svc = ("10.0.0.2", 22, "ssh") if ssh else ("10.0.0.3", 993, "ssl")
    for mins in (10, 30, 60):
        dur = mins * 60 + 1.5 + i * 0.01
        train.append(row(start, f"CTrainSession{i:03d}", f"10.0.1.{10 + i}",
                         40000 + i, dst, port, svc, dur, 900 * mins + 7 * i,
                         2500 * mins + 11 * i, "S1", "ShAD" if ssh else "ShADad"))
write("train/conn_long.log", "conn_long", train)

# The long connection: 10.0.1.66 -> 198.51.100.7:443 opened at 01:00 and
# closed after 6 h, pushing out 250 MB an hour (1.5 GB in all: a large
# upload too); the site reports open connections every hour
# (LongConnection::default_durations = Durations(1hr, 2hr, 3hr, 4hr, 5hr)).
# Its conn record is written only when it closes, at 07:00.
start = DAY + 3600.0 + 3.5
uid = "CL6hrOpen0000001"
reports = []
for h in range(1, 6):
    reports.append(row(start, uid, "10.0.1.66", 51515, "198.51.100.7", 443, "ssl",
                       h * 3600.0 + 0.25, 250_000_000 * h, 9_000 * h, "S1", "ShADad"))
# Two ordinary sessions reported at 1 h beside it.
for i in range(2):
    reports.append(row(DAY + 7200.0 + i * 60, f"CLOther{i:09d}", f"10.0.1.{30 + i}",
                       42000 + i, "10.0.0.2", 22, "ssh", 3600.5, 54_000, 150_000, "S1", "ShAD"))
write("open/conn_long.log", "conn_long", reports)
write("closed/conn_long.log", "conn_long", reports)
final = [row(start, uid, "10.0.1.66", 51515, "198.51.100.7", 443, "ssl",
             6 * 3600.0 + 12.75, 1_500_300_000, 54_100, "SF", "ShADadFf")]
write("closed/conn.log", "conn", final)
