//! One test per way the follower was seen to lose or double lines.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::sim::{compressed, write_gzip, Collected, Zeek};
use crate::follow::Follower;
use crate::log_kind::LogKind;

/// Steps enough to wait out every retry of an unfinished archive.
const PATIENCE: usize = 200;

/// A Zeek writing its live file, `lines` lines in, and a follower that
/// read them all from a first start: where most scenarios begin.
fn started(lines: u64) -> (Zeek, Vec<u64>, Collected, Follower) {
    let mut zeek = Zeek::new();
    let written = zeek.append(lines);
    let mut out = Collected::default();
    let mut f = zeek.follower(None);
    assert!(out.drain(&mut f, PATIENCE));
    (zeek, written, out, f)
}

/// Asserts every line came out once, in order.
fn assert_once_in_order(numbers: &[u64], expected: &[u64]) {
    assert_eq!(
        numbers,
        expected,
        "expected {} lines, got {}",
        expected.len(),
        numbers.len()
    );
}

/// Archives a renamed file damaged at a line boundary about 60% in: a
/// first gzip member with the lines before, then a member whose header is
/// broken, which the decoder refuses as soon as it gets there. (Bit rot
/// inside a deflate stream is found only some bytes later, after it
/// decoded garbage, so it would not say where the damage starts.)
fn archive_damaged(zeek: &Zeek, renamed: &Path) {
    let text = fs::read(renamed).unwrap();
    let cut = text[..text.len() * 6 / 10]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let gz = zeek.archive_path(renamed);
    write_gzip(&gz, &text[..cut]);
    let tail = gz.with_extension("tail");
    write_gzip(&tail, &text[cut..]);
    let mut bytes = fs::read(&gz).unwrap();
    let mut broken = fs::read(&tail).unwrap();
    broken[..4].copy_from_slice(b"junk");
    bytes.extend(broken);
    fs::write(&gz, bytes).unwrap();
    fs::remove_file(tail).unwrap();
    fs::remove_file(renamed).unwrap();
}

/// The follower read `read` lines, was killed, and meanwhile Zeek wrote
/// `more`, rotated, and the archive came out damaged in its middle; the new
/// live file has 20 lines. Returns what the restarted follower read and the
/// line numbers involved.
fn restart_onto_damaged_archive(read: u64, more: u64) -> (Collected, Vec<u64>, Vec<u64>) {
    let (mut zeek, first, out, f) = started(read);
    assert_once_in_order(&out.numbers, &first);
    drop(f);
    let rest = zeek.append(more);
    let renamed = zeek.rotate();
    archive_damaged(&zeek, &renamed);
    let live = zeek.append(20);
    let mut out2 = Collected::default();
    let mut f = zeek.follower(out.position.clone());
    for _ in 0..PATIENCE {
        out2.take(f.step());
    }
    (out2, rest, live)
}

/// A follower reads 10 lines and stops; Zeek writes `more` and rotates.
/// Returns the log, what was read (with its position), the line numbers
/// read and written after, and the renamed file.
fn stop_then_rotate(more: u64) -> (Zeek, Collected, Vec<u64>, Vec<u64>, std::path::PathBuf) {
    let (mut zeek, first, out, f) = started(10);
    drop(f);
    let rest = zeek.append(more);
    let renamed = zeek.rotate();
    (zeek, out, first, rest, renamed)
}

/// Checks what came out of a damaged archive: a prefix of its unread lines,
/// each once, the damage reported once, then the whole live file.
fn assert_damage_handled(out: &Collected, rest: &[u64], live: &[u64]) {
    let from_archive: Vec<u64> = out
        .numbers
        .iter()
        .copied()
        .filter(|n| rest.contains(n))
        .collect();
    assert!(
        !from_archive.is_empty() && rest.starts_with(&from_archive),
        "not a prefix of the archive's unread lines, each once: {} lines from {:?} to {:?}; errors {:?}",
        from_archive.len(),
        from_archive.first(),
        from_archive.last(),
        out.errors
    );
    assert!(from_archive.len() < rest.len(), "read past the damage?");
    let damaged: Vec<_> = out
        .errors
        .iter()
        .filter(|e| e.contains("damaged"))
        .collect();
    assert_eq!(
        damaged.len(),
        1,
        "the damage is reported once: {:?}",
        out.errors
    );
    let expected: Vec<u64> = from_archive.iter().chain(live).copied().collect();
    assert_once_in_order(&out.numbers, &expected);
}

/// A damaged archive found after a restart: what precedes the damage is
/// read once (from the checkpointed offset), the damage is reported, and
/// the live file is read.
#[test]
fn damaged_archive_after_restart_is_read_up_to_the_damage() {
    let (out, rest, live) = restart_onto_damaged_archive(100, 450);
    assert_damage_handled(&out, &rest, &live);
}

/// The same with an archive bigger than one step's lines: nothing is read
/// twice.
#[test]
fn big_damaged_archive_is_not_read_again() {
    let (out, rest, live) = restart_onto_damaged_archive(100, 30_000);
    assert_damage_handled(&out, &rest, &live);
}

/// An archive still being written (its gzip stream cut short) is read as
/// far as it goes, tried again from there, and finished once complete.
#[test]
fn unfinished_archive_is_continued_from_where_it_stopped() {
    let (mut zeek, mut out, first, rest, renamed) = stop_then_rotate(3000);
    let gz = zeek.archive_path(&renamed);
    let full = {
        write_gzip(&gz, &fs::read(&renamed).unwrap());
        fs::read(&gz).unwrap()
    };
    fs::remove_file(&renamed).unwrap();
    fs::write(&gz, &full[..full.len() / 2]).unwrap();
    let live = zeek.append(5);
    let mut f = zeek.follower(out.position.clone());
    for _ in 0..5 {
        out.take(f.step());
    }
    assert!(
        out.numbers.len() > first.len(),
        "nothing read of the archive"
    );
    fs::write(&gz, &full).unwrap();
    assert!(out.drain(&mut f, PATIENCE));
    let expected: Vec<u64> = first.iter().chain(&rest).chain(&live).copied().collect();
    assert_once_in_order(&out.numbers, &expected);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

/// An archive that stays cut short is given up after a bounded number of
/// tries: its readable lines once, the damage reported, then the live file.
#[test]
fn archive_that_stays_cut_short_is_given_up() {
    let (mut zeek, _, out, f) = started(10);
    drop(f);
    let rest = zeek.append(3000);
    let renamed = zeek.rotate();
    let gz = zeek.archive(&renamed);
    let full = fs::read(&gz).unwrap();
    fs::write(&gz, &full[..full.len() / 2]).unwrap();
    let live = zeek.append(5);
    let mut out2 = Collected::default();
    let mut f = zeek.follower(out.position.clone());
    for _ in 0..PATIENCE {
        out2.take(f.step());
    }
    assert_damage_handled(&out2, &rest, &live);
}

/// Archives in bzip2 and zstd (what ZeekControl and zeek-archiver can be
/// set to instead of gzip) are read as gzip ones are: from the checkpoint
/// on, each line once, and one still being written (cut short) is tried
/// again until it is whole.
#[test]
fn archives_in_bzip2_and_zstd_are_resumed_and_waited_for() {
    for ext in ["bz2", "zst"] {
        let (mut zeek, mut out, first, rest, renamed) = stop_then_rotate(3000);
        let whole = compressed(ext, &fs::read(&renamed).unwrap());
        let archive = zeek.archive_path(&renamed).with_extension(ext);
        fs::remove_file(&renamed).unwrap();
        // Cut after its first blocks (bzip2 and zstd hand out nothing of a
        // block until it is whole).
        fs::write(&archive, &whole[..whole.len() * 3 / 4]).unwrap();
        let live = zeek.append(5);
        let mut f = zeek.follower(out.position.clone());
        for _ in 0..3 {
            out.take(f.step());
        }
        fs::write(&archive, &whole).unwrap();
        assert!(out.drain(&mut f, PATIENCE));
        assert_once_in_order(&out.numbers, &[first, rest, live].concat());
        assert!(out.errors.is_empty(), "{ext}: {:?}", out.errors);
    }
}

/// The archiver compresses a renamed file the follower has finished while
/// it looks for files rotated after it (Zeek rotated again): the archive,
/// still being written
/// (of bzip2 and zstd nothing decodes until a whole block is there), is
/// never taken for a later file and read again.
#[test]
fn an_archive_being_written_of_a_file_finished_is_not_read_again() {
    for ext in ["gz", "bz2", "zst"] {
        for cut in [10, 1000, 30_000] {
            let (mut zeek, mut expected, mut out, mut f) = started(3000);
            let renamed = zeek.rotate();
            let whole = compressed(ext, &fs::read(&renamed).unwrap());
            expected.extend(zeek.append(5));
            assert!(out.drain(&mut f, PATIENCE));
            let archive = zeek.archive_path(&renamed).with_extension(ext);
            fs::write(&archive, &whole[..cut.min(whole.len() - 1)]).unwrap();
            expected.extend(zeek.append(5));
            for _ in 0..5 {
                out.take(f.step());
            }
            // Zeek rotates again meanwhile: the follower finishes that file
            // and lists what was rotated after it.
            zeek.rotate();
            expected.extend(zeek.append(5));
            for _ in 0..5 {
                out.take(f.step());
            }
            fs::write(&archive, &whole).unwrap();
            fs::remove_file(&renamed).unwrap();
            expected.extend(zeek.append(5));
            assert!(out.drain(&mut f, PATIENCE));
            let (n, want) = (out.numbers.len(), expected.len());
            assert!(
                out.numbers == expected,
                "{ext}, cut at {cut}: {n} lines, {want} expected; {:?}",
                out.errors
            );
        }
    }
}

/// Restarted while the archiver gzips the renamed file straight into its
/// final name: the complete renamed copy is read, not the half-written
/// archive (which would be given up after its tries, losing the rest).
#[test]
fn a_renamed_file_is_preferred_to_its_unfinished_archive() {
    let (mut zeek, mut out, first, rest, renamed) = stop_then_rotate(3000);
    let gz = zeek.archive_path(&renamed);
    write_gzip(&gz, &fs::read(&renamed).unwrap());
    let full = fs::read(&gz).unwrap();
    fs::write(&gz, &full[..full.len() / 2]).unwrap();
    let live = zeek.append(5);
    let mut f = zeek.follower(out.position.clone());
    assert!(out.drain(&mut f, PATIENCE));
    let expected: Vec<u64> = first.iter().chain(&rest).chain(&live).copied().collect();
    assert_once_in_order(&out.numbers, &expected);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

/// logrotate's copytruncate: the live file is copied away and cut in place,
/// and grows past the old offset before the follower looks. The lines the
/// follower had not read yet come from the copy, then the new content from
/// its start.
#[test]
fn copytruncate_is_detected_when_the_file_regrew_past_the_offset() {
    let (mut zeek, mut expected, mut out, mut f) = started(100);
    expected.extend(zeek.append(50));
    zeek.copytruncate();
    expected.extend(zeek.append(250));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// The same when the follower had read everything before the copy.
#[test]
fn copytruncate_after_reading_everything() {
    let (mut zeek, mut expected, mut out, mut f) = started(100);
    zeek.copytruncate();
    expected.extend(zeek.append(250));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// A record stamped ten years ahead opens the live file; the follower is
/// killed, Zeek rotates and archives meanwhile (into today's folder, as the
/// clock says). After the restart the rest of the old file is found.
#[test]
fn a_record_from_the_future_does_not_hide_the_archives() {
    let mut zeek = Zeek::new();
    let ten_years = 10.0 * 365.0 * 86_400.0;
    let mut expected = zeek.append_with_ts(1, 1_713_484_800.0 + ten_years);
    expected.extend(zeek.append(9));
    let mut out = Collected::default();
    let mut f = zeek.follower(None);
    assert!(out.drain(&mut f, PATIENCE));
    drop(f);
    expected.extend(zeek.append(70));
    let renamed = zeek.rotate();
    zeek.archive(&renamed);
    expected.extend(zeek.append(5));
    let mut f = zeek.follower(out.position.clone());
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// Runs `step()` on another thread; fails if it does not return in time.
fn step_returns_in_time(zeek: &Zeek) -> Collected {
    let follower = zeek.follower(None);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = follower;
        let mut out = Collected::default();
        for _ in 0..3 {
            out.take(f.step());
        }
        let _ = tx.send(out);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("step() blocked on a file that is not a regular file")
}

#[test]
fn a_fifo_as_the_live_file_does_not_block() {
    let zeek = Zeek::new();
    let c = std::ffi::CString::new(zeek.live().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = step_returns_in_time(&zeek);
    assert!(out.numbers.is_empty() && out.position.is_none());
}

#[test]
fn dev_zero_as_the_live_file_is_refused() {
    let zeek = Zeek::new();
    std::os::unix::fs::symlink("/dev/zero", zeek.live()).unwrap();
    let out = step_returns_in_time(&zeek);
    assert!(out.numbers.is_empty() && out.errors.is_empty() && out.position.is_none());
}

/// A line far longer than the cap, written in pieces between steps, is
/// handed out as one malformed line naming its line number; the lines after
/// it come out.
#[test]
fn an_overlong_line_is_skipped_and_later_lines_come_out() {
    let (mut zeek, mut expected, mut out, mut f) = started(3);
    let piece = vec![b'x'; 256 * 1024];
    for _ in 0..12 {
        zeek.append_bytes(&piece);
        out.take(f.step());
    }
    zeek.append_bytes(b"\n");
    expected.extend(zeek.append(2));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].contains(":4:") && out.errors[0].contains("longer than"),
        "{}",
        out.errors[0]
    );
}

/// A first start: the live file's start is taken before the warm-up, and
/// Zeek rotates (and archives) it before the follower opens anything. The
/// rotated file is read from its start, then the new live file: nothing
/// of the file live at the start is lost (it was, before the start was
/// taken: the follower opened whatever was live after the warm-up).
#[test]
fn a_first_start_follows_its_live_file_through_a_rotation_during_warm_up() {
    let mut zeek = Zeek::new();
    let first = zeek.append(10);
    let start = Follower::live_start(LogKind::CONN, &zeek.root).expect("a live file");
    assert_eq!(start.offset, 0);
    let renamed = zeek.rotate();
    zeek.archive(&renamed);
    let live = zeek.append(5);
    let mut out = Collected::default();
    let mut f = zeek.follower(Some(start));
    assert!(out.drain(&mut f, PATIENCE));
    let expected: Vec<u64> = first.iter().chain(&live).copied().collect();
    assert_once_in_order(&out.numbers, &expected);
    // No live file yet, or an empty one: a start waiting for the next
    // (the follower opens the live file when it comes; see
    // `a_log_type_without_a_file_at_the_start_reads_what_was_rotated_while_stopped`).
    let empty = Zeek::new();
    let waiting =
        |z: &Zeek| Follower::live_start(LogKind::CONN, &z.root).is_some_and(|p| p.is_waiting());
    assert!(waiting(&empty));
    std::fs::write(empty.live(), b"").unwrap();
    assert!(waiting(&empty));
}

/// A follower reads 10 lines; Zeek writes a bad line (line 11) and 5 good
/// ones, then rotates, before the follower looks again. Returns the log,
/// what was read, the follower, the good lines and the renamed file.
fn bad_line_then_rotate() -> (Zeek, Collected, Follower, Vec<u64>, std::path::PathBuf) {
    let (mut zeek, mut expected, out, f) = started(10);
    zeek.append_bytes(b"{not a record\n");
    expected.extend(zeek.append(5));
    let renamed = zeek.rotate();
    (zeek, out, f, expected, renamed)
}

/// A bad line read after its file was renamed away is named in the file it
/// is now in, at its line there: the live path names the next file by then
/// (found by an operator's review: `current/conn.log:11` named a line of
/// the rotated file).
#[test]
fn a_line_read_after_a_rotation_is_named_in_the_rotated_file() {
    let (mut zeek, mut out, mut f, mut expected, renamed) = bad_line_then_rotate();
    expected.extend(zeek.append(3));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    let named = format!("{}:11: skipped malformed line", renamed.display());
    assert!(out.errors[0].starts_with(&named), "{}", out.errors[0]);
}

/// Renamed and already archived when the follower looks: the archive,
/// found by fingerprint, holds the line under the same number. Renamed and
/// gone: the message says the live path's file was rotated since.
#[test]
fn a_line_read_after_a_rotation_names_the_archive_or_says_it_moved() {
    let (zeek, mut out, mut f, _, renamed) = bad_line_then_rotate();
    let gz = zeek.archive(&renamed);
    assert!(out.drain(&mut f, PATIENCE));
    let named = format!("{}:11: skipped malformed line", gz.display());
    assert!(out.errors[0].starts_with(&named), "{:?}", out.errors);

    let (zeek, mut out, mut f, _, renamed) = bad_line_then_rotate();
    fs::remove_file(&renamed).unwrap();
    assert!(out.drain(&mut f, PATIENCE));
    let named = format!("{} (since rotated):11:", zeek.live().display());
    assert!(out.errors[0].starts_with(&named), "{:?}", out.errors);
}

/// Restarted after the rotation: the checkpointed file is opened under its
/// rotated name, which its bad line is named in too.
#[test]
fn a_line_read_after_a_restart_names_the_rotated_file() {
    let (zeek, mut out, _, _, renamed) = stop_then_rotate(5);
    fs::OpenOptions::new()
        .append(true)
        .open(&renamed)
        .unwrap()
        .write_all(b"{not a record\n")
        .unwrap();
    let mut f = zeek.follower(out.position.clone());
    assert!(out.drain(&mut f, PATIENCE));
    let named = format!("{}:16: skipped malformed line", renamed.display());
    assert!(out.errors[0].starts_with(&named), "{:?}", out.errors);
}

/// ZeekControl's `current` link removed and made again to the same
/// folder: for a moment the live path named nothing and the file was
/// taken for rotated; named again, it goes on where it was read to, no
/// line read twice (all of it was, found by a review). And while the path
/// cannot be looked up (here a link pointing at itself; for a service
/// user, a folder's permissions changed for a moment) the file is read on
/// through its handle.
#[test]
fn a_live_path_that_names_nothing_for_a_moment_reads_no_line_twice() {
    let (mut zeek, mut expected, mut out, mut f) = started(30);
    let spool = zeek.spool();
    let link = zeek.root.join("current");
    fs::remove_file(&link).unwrap();
    for _ in 0..5 {
        out.take(f.step());
    }
    std::os::unix::fs::symlink(&spool, &link).unwrap();
    expected.extend(zeek.append(10));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);

    // A link to itself: looking the path up fails, saying nothing of
    // what it names.
    zeek.relink_current(&link);
    let mut spooled = fs::OpenOptions::new()
        .append(true)
        .open(spool.join("conn.log"))
        .unwrap();
    for _ in 0..5 {
        let n = zeek.next;
        zeek.next += 1;
        writeln!(spooled, "{}", zeek.line(n)).unwrap();
        expected.push(n);
        out.take(f.step());
    }
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
    zeek.relink_current(&spool);
    expected.extend(zeek.append(3));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// While the follower was stopped, Zeek rotated twice and the file the
/// checkpoint was in was deleted (expired, or a disk cleanup): what was
/// written to it after the checkpoint is lost, but the files rotated
/// after it are read, then the live file (the follower went straight to
/// the live file, losing them too: found by a review).
///
/// Which files came after it is told by rotation names: those rotated
/// after the file finished before it (an archive's modification time can
/// be later than a checkpoint for a file read before it).
#[test]
fn a_checkpointed_file_deleted_while_stopped_loses_only_itself() {
    let (mut zeek, mut read, mut out, mut f) = started(10);
    zeek.rotate();
    read.extend(zeek.append(3));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &read);
    drop(f);
    zeek.append(5);
    delete_the_checkpointed_file_and_restart(&mut zeek, out.position);
}

// A live path that named nothing for a moment, with what Zeek did
// meanwhile (written by a review of the change that made it read no
// line twice).

/// Removes `current` and steps the follower while it names nothing, then
/// makes it again to the same spool.
fn link_gone_for_a_moment(zeek: &Zeek, f: &mut Follower, out: &mut Collected) {
    let link = zeek.root.join("current");
    fs::remove_file(&link).unwrap();
    for _ in 0..5 {
        out.take(f.step());
    }
    std::os::unix::fs::symlink(zeek.spool(), &link).unwrap();
}

/// after the link was gone for a moment, the live file's position has
/// no `follows` (the file finished was the live file itself, named by no
/// rotation name); a restart after it was deleted loses the files rotated
/// after it.
#[test]
fn a_file_finished_while_its_path_named_nothing_keeps_what_came_before_it() {
    let (mut zeek, _, mut out, mut f) = started(10);
    zeek.rotate();
    zeek.append(3);
    assert!(out.drain(&mut f, PATIENCE));
    assert!(out.position.as_ref().unwrap().follows.is_some());
    link_gone_for_a_moment(&zeek, &mut f, &mut out);
    zeek.append(2);
    assert!(out.drain(&mut f, PATIENCE));
    drop(f);
    zeek.append(5);
    delete_the_checkpointed_file_and_restart(&mut zeek, out.position);
}

/// a resumed follower keeps the checkpoint's `follows` for ever; once
/// a file is finished under no rotation name (the link gone for a moment)
/// that stale value is checkpointed again, and a restart re-reads a file
/// read long before.
#[test]
fn a_resumed_follower_forgets_the_checkpoints_order_once_it_finishes_a_file() {
    let (mut zeek, _, mut out, mut f) = started(10);
    zeek.rotate(); // R0
    zeek.append(3); // L1
    assert!(out.drain(&mut f, PATIENCE));
    drop(f);
    // Restarted while L1 is live: follows = R0's time.
    let mut f = zeek.follower(out.position.clone());
    zeek.rotate(); // R1
    zeek.append(4); // L2
    assert!(out.drain(&mut f, PATIENCE));
    link_gone_for_a_moment(&zeek, &mut f, &mut out);
    zeek.append(2);
    assert!(out.drain(&mut f, PATIENCE));
    drop(f);
    delete_the_checkpointed_file_and_restart(&mut zeek, out.position);
}

/// while the link names nothing, Zeek writes on and rotates the file:
/// it was finished at the offset read, its renamed form is taken for the
/// file finished, and what it got meanwhile is never read.
#[test]
fn a_file_written_on_and_renamed_while_its_path_named_nothing_is_read_on() {
    let (mut zeek, mut expected, mut out, mut f) = started(5);
    let link = zeek.root.join("current");
    fs::remove_file(&link).unwrap();
    for _ in 0..5 {
        out.take(f.step());
    }
    let spool = zeek.spool();
    let mut text = String::new();
    for _ in 0..3 {
        let n = zeek.next;
        zeek.next += 1;
        text.push_str(&zeek.line(n));
        text.push('\n');
        expected.push(n);
    }
    let mut w = fs::OpenOptions::new()
        .append(true)
        .open(spool.join("conn.log"))
        .unwrap();
    w.write_all(text.as_bytes()).unwrap();
    drop(w);
    fs::rename(
        spool.join("conn.log"),
        spool.join("conn.2024-04-19-00-00-00.log"),
    )
    .unwrap();
    zeek.hour = 1;
    std::os::unix::fs::symlink(&spool, &link).unwrap();
    expected.extend(zeek.append(4));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// What Zeek does with the line it was writing, whose newline was not
/// there yet while the live path named nothing (the file was finished
/// then, and that line handed out as its last).
enum Meanwhile {
    /// Writes its newline, and goes on in the same file.
    Ends,
    /// Writes the rest of it: what was handed out was a part.
    Grows,
    /// Writes its newline and renames the file.
    EndsAndRotates,
}

/// A line handed out as an unterminated last line while the live path
/// named nothing: once whole, it is not handed out again (it was when it
/// had been complete, found in session 25), and a part of a line is
/// followed by the whole line.
fn last_line_unterminated_while_the_path_named_nothing(meanwhile: Meanwhile) -> Collected {
    let (mut zeek, mut expected, mut out, mut f) = started(5);
    let n = zeek.next;
    zeek.next += 1;
    expected.push(n);
    let line = zeek.line(n);
    let cut = match meanwhile {
        Meanwhile::Grows => line.len() / 2,
        Meanwhile::Ends | Meanwhile::EndsAndRotates => line.len(),
    };
    zeek.append_bytes(&line.as_bytes()[..cut]);
    link_gone_for_a_moment(&zeek, &mut f, &mut out);
    zeek.append_bytes(format!("{}\n", &line[cut..]).as_bytes());
    if let Meanwhile::EndsAndRotates = meanwhile {
        zeek.rotate();
    }
    expected.extend(zeek.append(3));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
    out
}

#[test]
fn a_complete_last_line_handed_out_while_the_path_named_nothing_is_not_handed_out_again() {
    let out = last_line_unterminated_while_the_path_named_nothing(Meanwhile::EndsAndRotates);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let out = last_line_unterminated_while_the_path_named_nothing(Meanwhile::Ends);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn a_part_of_a_line_handed_out_while_the_path_named_nothing_is_followed_by_the_whole_line() {
    let out = last_line_unterminated_while_the_path_named_nothing(Meanwhile::Grows);
    assert_eq!(
        out.errors.len(),
        1,
        "the part is a malformed line: {:?}",
        out.errors
    );
}

/// Writes line `n` without its newline and takes the `current` link away
/// for a moment: the follower finishes the file and hands the line out.
fn hand_out_an_unterminated_line(zeek: &mut Zeek, f: &mut Follower, out: &mut Collected) -> u64 {
    let n = zeek.next;
    zeek.next += 1;
    zeek.append_bytes(zeek.line(n).as_bytes());
    link_gone_for_a_moment(zeek, f, out);
    n
}

/// That the line was handed out is kept in the checkpoint: a restart,
/// straight after (its offset then fell within the line once its newline
/// came, and the line was read again from its start) or after the file
/// came back, does not hand it out again (both found by a review).
#[test]
fn a_restart_does_not_hand_out_again_a_last_line_handed_out_unterminated() {
    for came_back_first in [false, true] {
        let (mut zeek, mut expected, mut out, mut f) = started(5);
        expected.push(hand_out_an_unterminated_line(&mut zeek, &mut f, &mut out));
        if came_back_first {
            assert!(out.drain(&mut f, PATIENCE));
        }
        assert_eq!(out.numbers, expected);
        drop(f);
        zeek.append_bytes(b"\n");
        expected.extend(zeek.append(3));
        let mut f = zeek.follower(out.position.clone());
        assert!(out.drain(&mut f, PATIENCE));
        assert_once_in_order(&out.numbers, &expected);
    }
}

/// The file came back with the line still unterminated; its newline comes
/// and logrotate copytruncates: the copy is finished without that line
/// again (the copy was queued without what was handed out: a review).
#[test]
fn a_copytruncate_keeps_what_was_handed_out_unterminated() {
    let (mut zeek, mut expected, mut out, mut f) = started(5);
    expected.push(hand_out_an_unterminated_line(&mut zeek, &mut f, &mut out));
    assert!(out.drain(&mut f, PATIENCE));
    zeek.append_bytes(b"\n");
    expected.extend(zeek.append(3));
    zeek.copytruncate();
    expected.extend(zeek.append(2));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// A restart finds its file archived, and the archive still being written
/// (the renamed file already gone): it is waited for. Cut within its magic
/// bytes it was read as a plain file (a garbage line, the file's lines
/// lost); cut before enough of it decodes to tell it (bzip2 and zstd decode
/// nothing of a block until it is whole) it was taken for gone, or for a
/// file rotated after it and read again from its start (both found by a
/// review).
#[test]
fn an_archive_still_being_written_is_waited_for_at_a_restart() {
    for ext in ["gz", "bz2", "zst"] {
        for cut in [1, 2, 3, 100, 2000, 20_000] {
            let (mut zeek, mut expected, mut out, mut f) = started(10);
            zeek.rotate();
            expected.extend(zeek.append(3));
            assert!(out.drain(&mut f, PATIENCE));
            drop(f);
            expected.extend(zeek.append(3000));
            let renamed = zeek.rotate();
            let whole = compressed(ext, &fs::read(&renamed).unwrap());
            let archive = zeek.archive_path(&renamed).with_extension(ext);
            fs::remove_file(&renamed).unwrap();
            fs::write(&archive, &whole[..cut.min(whole.len() - 1)]).unwrap();
            let mut f = zeek.follower(out.position.clone());
            expected.extend(zeek.append(2));
            for _ in 0..3 {
                out.take(f.step());
            }
            fs::write(&archive, &whole).unwrap();
            assert!(out.drain(&mut f, PATIENCE));
            let (n, want) = (out.numbers.len(), expected.len());
            assert!(
                out.numbers == expected && out.errors.is_empty(),
                "{ext}, cut at {cut}: {n} lines, {want} expected; {:?}",
                out.errors
            );
        }
    }
}

/// Control: a stat error (link to itself) that lasts while Zeek rotates
/// twice.
#[test]
fn a_live_path_unreadable_across_two_rotations_reads_every_line_once() {
    let (mut zeek, mut expected, mut out, mut f) = started(5);
    let spool = zeek.spool();
    let link = zeek.root.join("current");
    zeek.relink_current(&link);
    for _ in 0..3 {
        out.take(f.step());
    }
    // Zeek writes and rotates twice in the spool meanwhile.
    for h in 0..2u32 {
        let mut text = String::new();
        for _ in 0..3 {
            let n = zeek.next;
            zeek.next += 1;
            text.push_str(&zeek.line(n));
            text.push('\n');
            expected.push(n);
        }
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spool.join("conn.log"))
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        for _ in 0..3 {
            out.take(f.step());
        }
        fs::rename(
            spool.join("conn.log"),
            spool.join(format!("conn.2024-04-19-{h:02}-00-00.log")),
        )
        .unwrap();
        for _ in 0..3 {
            out.take(f.step());
        }
    }
    zeek.hour = 2;
    zeek.relink_current(&spool);
    expected.extend(zeek.append(4));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// Control: TSV, link gone, the file truncated in place and regrown
/// (writer restart) meanwhile, then the link back.
#[test]
fn a_file_truncated_while_its_path_named_nothing_is_read_from_its_start() {
    let mut zeek = Zeek::new();
    zeek.tsv = true;
    let mut expected = zeek.append(5);
    let mut out = Collected::default();
    let mut f = zeek.follower(None);
    assert!(out.drain(&mut f, PATIENCE));
    let link = zeek.root.join("current");
    fs::remove_file(&link).unwrap();
    for _ in 0..5 {
        out.take(f.step());
    }
    std::os::unix::fs::symlink(zeek.spool(), &link).unwrap();
    zeek.truncate();
    expected.extend(zeek.append(8));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &expected);
}

/// While the follower is stopped, the live file (the checkpoint's) is
/// rotated, archived and deleted; 7 lines go to the next file, rotated and
/// archived, and 4 to the live one. A follower restarted from `position`
/// reads the 7 and the 4, once, in order.
fn delete_the_checkpointed_file_and_restart(
    zeek: &mut Zeek,
    position: Option<crate::follow::Position>,
) {
    let gone = zeek.rotate();
    let gone = zeek.archive(&gone);
    let kept = zeek.append(7);
    let second = zeek.rotate();
    zeek.archive(&second);
    let live = zeek.append(4);
    fs::remove_file(gone).unwrap();
    let mut out = Collected::default();
    let mut f = zeek.follower(position);
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &[kept, live].concat());
}

/// A first start's position on the sim's first day (its rotation names
/// are of 2024-04-19 on).
fn first_start(zeek: &Zeek) -> crate::follow::Position {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 4, 19).unwrap();
    Follower::live_start_on(LogKind::CONN, &zeek.root, day).unwrap()
}

/// A log type without a file at a first start (a quiet one, or Zeek not
/// started yet), stopped before one came: what Zeek wrote and rotated
/// while the run was down is read at the restart, then the live file. (A
/// review lost 600 of 700 records: the restart began at the live file.)
#[test]
fn a_log_type_without_a_file_at_the_start_reads_what_was_rotated_while_stopped() {
    for empty in [false, true] {
        let mut zeek = Zeek::new();
        if empty {
            zeek.append_bytes(b"");
        }
        let start = first_start(&zeek);
        assert!(start.is_waiting(), "{start:?}");
        let mut out = Collected::default();
        let mut f = zeek.follower(Some(start.clone()));
        assert!(out.drain(&mut f, PATIENCE));
        assert!(out.numbers.is_empty());
        let saved = out.position.clone().unwrap_or(start);
        assert!(saved.is_waiting(), "{saved:?}");
        drop(f);
        let mut written = zeek.append(30);
        let renamed = zeek.rotate();
        zeek.archive(&renamed);
        written.extend(zeek.append(20));
        zeek.rotate();
        written.extend(zeek.append(10));
        let mut out = Collected::default();
        let mut f = zeek.follower(Some(saved));
        assert!(out.drain(&mut f, PATIENCE));
        assert_once_in_order(&out.numbers, &written);
        // And on from there, as any follower.
        let more = zeek.append(5);
        assert!(out.drain(&mut f, PATIENCE));
        assert_eq!(out.numbers[written.len()..], more[..]);
    }
}

/// The file live at a first start, with nothing rotated before it, is
/// gone at a restart (expired, or removed, after more rotations): the
/// files rotated after it are read. (It named no file it came after, and
/// a review lost two archives still on disk.)
#[test]
fn a_first_file_gone_while_stopped_is_followed_by_the_files_rotated_after_it() {
    let mut zeek = Zeek::new();
    let first = zeek.append(10);
    let start = first_start(&zeek);
    assert!(!start.is_waiting());
    let mut out = Collected::default();
    let mut f = zeek.follower(Some(start));
    assert!(out.drain(&mut f, PATIENCE));
    assert_once_in_order(&out.numbers, &first);
    drop(f);
    zeek.append(5);
    let renamed = zeek.rotate();
    fs::remove_file(zeek.archive(&renamed)).unwrap();
    let mut written = zeek.append(20);
    let renamed = zeek.rotate();
    zeek.archive(&renamed);
    written.extend(zeek.append(7));
    let mut out2 = Collected::default();
    let mut f = zeek.follower(out.position.clone());
    assert!(out2.drain(&mut f, PATIENCE));
    assert_once_in_order(&out2.numbers, &written);
}
