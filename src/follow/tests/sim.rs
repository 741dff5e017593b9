//! A stand-in for Zeek and its archiver in a temp folder, for the
//! follower's tests: JSON conn lines numbered by a counter (so every line is
//! unique and says where it belongs), rotation by rename, gzip into dated
//! folders, truncation, copytruncate and a moving `current` symlink. Every
//! operation is done in-process and completes before the follower looks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::follow::{Follower, Line, Position, Step};
use crate::log_kind::LogKind;
use crate::zeek::Parsed;

/// The text of line `n` (without its newline); `ts` is its record time.
pub fn line_text(n: u64, ts: f64) -> String {
    format!(r#"{{"_path":"conn","ts":{ts:.6},"uid":"L{n:06}","id.orig_h":"10.0.0.1"}}"#)
}

/// The same line in Zeek's TSV format.
pub fn tsv_line_text(n: u64, ts: f64) -> String {
    format!("{ts:.6}\tL{n:06}\t10.0.0.1")
}

/// A TSV header as Zeek writes it at the top of each file; `open` makes it
/// unique, as Zeek's `#open` time does.
fn tsv_header(open: u32) -> String {
    format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-04-19-{open:08}\n#fields\tts\tuid\tid.orig_h\n#types\ttime\tstring\taddr\n"
    )
}

/// The number of a line that came out, or `None` for a skipped one.
pub fn number(line: &Line) -> Option<u64> {
    match &line.parsed {
        Ok(Parsed::Record(r)) => r.get("uid").as_str()?.strip_prefix('L')?.parse().ok(),
        _ => None,
    }
}

/// A log folder with `current/` (a symlink to a spool folder) and dated
/// archive folders.
pub struct Zeek {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// The next line number.
    pub next: u64,
    /// The fake clock, in hours since 2024-04-19 00:00, for rotation names.
    pub hour: u32,
    /// Zeek's TSV format (a header at the top of every file) instead of JSON.
    pub tsv: bool,
    /// Files started, for unique `#open` lines.
    opened: u32,
    spools: u32,
}

impl Zeek {
    pub fn new() -> Zeek {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        fs::create_dir_all(root.join("spool0")).unwrap();
        std::os::unix::fs::symlink(root.join("spool0"), root.join("current")).unwrap();
        Zeek {
            _tmp: tmp,
            root,
            next: 0,
            hour: 0,
            tsv: false,
            opened: 0,
            spools: 1,
        }
    }

    pub fn live(&self) -> PathBuf {
        self.root.join("current/conn.log")
    }

    pub fn follower(&self, resume: Option<Position>) -> Follower {
        Follower::new(LogKind::CONN, &self.root, resume)
    }

    /// The text of line `n` in this log's format.
    pub fn line(&self, n: u64) -> String {
        let ts = 1_713_484_800.0 + n as f64;
        if self.tsv {
            tsv_line_text(n, ts)
        } else {
            line_text(n, ts)
        }
    }

    /// A TSV writer starts every file with its header.
    pub fn start_file_if_new(&mut self) {
        let empty = std::fs::metadata(self.live()).map_or(true, |m| m.len() == 0);
        if self.tsv && empty {
            self.opened += 1;
            self.append_bytes(tsv_header(self.opened).as_bytes());
        }
    }

    /// Appends raw bytes to the live file (created if missing).
    pub fn append_bytes(&self, bytes: &[u8]) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// Appends `n` complete lines; returns their numbers.
    pub fn append(&mut self, n: u64) -> Vec<u64> {
        self.append_with_ts(n, 1_713_484_800.0)
    }

    pub fn append_with_ts(&mut self, n: u64, ts: f64) -> Vec<u64> {
        self.start_file_if_new();
        let mut text = String::new();
        let first = self.next;
        for i in 0..n {
            let ts = ts + (first + i) as f64;
            let line = if self.tsv {
                tsv_line_text(first + i, ts)
            } else {
                line_text(first + i, ts)
            };
            text.push_str(&line);
            text.push('\n');
        }
        self.next += n;
        self.append_bytes(text.as_bytes());
        (first..first + n).collect()
    }

    /// `(day folder, rotation stamp)` of the fake clock's hour, then the
    /// clock moves on.
    fn tick(&mut self) -> (String, String, u32) {
        let day = 19 + self.hour / 24;
        let h = self.hour % 24;
        self.hour += 1;
        (format!("2024-04-{day:02}"), format!("{day:02}-{h:02}"), h)
    }

    /// Zeek's rotation: the live file renamed in `current/`; a new live
    /// file appears with the next append. Returns the renamed path.
    pub fn rotate(&mut self) -> PathBuf {
        let (_, stamp, _) = self.tick();
        let renamed = self
            .root
            .join(format!("current/conn.2024-04-{stamp}-00-00.log"));
        if self.live().exists() {
            fs::rename(self.live(), &renamed).unwrap();
        }
        renamed
    }

    /// The archiver: gzips a renamed file into its dated folder and removes
    /// it. Returns the archive.
    pub fn archive(&self, renamed: &Path) -> PathBuf {
        let gz = self.archive_path(renamed);
        write_gzip(&gz, &fs::read(renamed).unwrap());
        fs::remove_file(renamed).unwrap();
        gz
    }

    /// Where the archiver puts a renamed file: `current/conn.2024-04-19-05-00-00.log`
    /// goes to `2024-04-19/conn.05:00:00-06:00:00.log.gz`.
    pub fn archive_path(&self, renamed: &Path) -> PathBuf {
        let name = renamed.file_name().unwrap().to_str().unwrap();
        let stamp = &name["conn.".len().."conn.2024-04-19-05".len()];
        let (day, h) = (&stamp[..10], stamp[11..].parse::<u32>().unwrap());
        let dir = self.root.join(day);
        fs::create_dir_all(&dir).unwrap();
        dir.join(format!(
            "conn.{h:02}:00:00-{:02}:00:00.log.gz",
            (h + 1) % 24
        ))
    }

    /// Renamed files still in `current/`, oldest first.
    pub fn renamed(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.root.join("current"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "conn.log")
            .collect();
        v.sort();
        v
    }

    /// A writer restart: the live file cut to nothing in place.
    pub fn truncate(&self) {
        if self.live().exists() {
            File::create(self.live()).unwrap();
        }
    }

    /// logrotate's copytruncate: the live file copied to a rotated name,
    /// then cut to nothing in place. Returns the copy.
    pub fn copytruncate(&mut self) -> PathBuf {
        let (_, stamp, _) = self.tick();
        let copy = self
            .root
            .join(format!("current/conn.2024-04-{stamp}-00-00.log"));
        fs::copy(self.live(), &copy).unwrap();
        self.truncate();
        copy
    }

    /// ZeekControl restarting Zeek in a new spool: the old live file is
    /// rotated, everything rotated in the old spool is archived, then
    /// `current` points to a new, empty folder.
    pub fn swap_current(&mut self) {
        if self.live().exists() {
            self.rotate();
        }
        for renamed in self.renamed() {
            self.archive(&renamed);
        }
        let spool = self.root.join(format!("spool{}", self.spools));
        self.spools += 1;
        fs::create_dir_all(&spool).unwrap();
        let tmp = self.root.join("current.new");
        std::os::unix::fs::symlink(&spool, &tmp).unwrap();
        fs::rename(&tmp, self.root.join("current")).unwrap();
    }
}

impl Zeek {
    /// The spool folder `current` points to now.
    pub fn spool(&self) -> PathBuf {
        self.root.join(format!("spool{}", self.spools - 1))
    }

    /// Points `current` at `target` (removed first: for a moment it names
    /// nothing), as `rm current; ln -s ...` does.
    pub fn relink_current(&self, target: &Path) {
        let link = self.root.join("current");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(target, &link).unwrap();
    }

    /// Whether a file the follower can reach (the live one, renamed ones,
    /// archives) still holds the content a position was taken in.
    pub fn holds(&self, position: &Position) -> bool {
        let current = self.root.join("current");
        let mut files = crate::follow::identity::rotated_files(&self.root, &current, "conn", None);
        files.push(self.live());
        files
            .iter()
            .any(|p| crate::follow::identity::matches(p, position.fingerprint))
    }
}

pub fn write_gzip(path: &Path, bytes: &[u8]) {
    let mut enc =
        flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

/// `bytes` compressed as an archive ending `.ext` (gz, bz2 or zst) is.
pub fn compressed(ext: &str, bytes: &[u8]) -> Vec<u8> {
    match ext {
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(bytes, 3).unwrap(),
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        _ => panic!("no archive ending .{ext} here"),
    }
}

/// What a follower handed out over several steps.
#[derive(Default)]
pub struct Collected {
    /// Numbers of the records, in order.
    pub numbers: Vec<u64>,
    /// Lines that were errors (malformed, damaged files), as messages.
    pub errors: Vec<String>,
    /// The last position handed out.
    pub position: Option<Position>,
}

impl Collected {
    pub fn take(&mut self, step: Step) -> bool {
        for line in &step.lines {
            match (&line.parsed, number(line)) {
                (_, Some(n)) => self.numbers.push(n),
                (Err(e), None) => self.errors.push(e.to_string()),
                (Ok(_), None) => {}
            }
        }
        if step.position.is_some() {
            self.position = step.position;
        }
        step.idle
    }

    /// Steps until an idle step; `false` if `max` steps were not enough.
    pub fn drain(&mut self, f: &mut Follower, max: usize) -> bool {
        (0..max).any(|_| self.take(f.step()))
    }
}
