//! A model-based test of the follower: random sequences of what Zeek, its
//! archiver, logrotate and the operator do to a log folder, with steps,
//! checkpoints, crashes and restarts of the follower in between, all
//! in-process and without sleeps.
//!
//! The model is the contract, as Zeek behaves:
//!
//! - Zeek writes JSON lines, or TSV with a header at the top of each file
//!   (whose `#open` time tells files apart; the fingerprint relies on it).
//! - Zeek writes whole lines; a line may be seen half written, and is
//!   completed in the same file. A file is rotated (renamed, copied by
//!   copytruncate, or left behind by a spool that moves) only after its
//!   last line is complete.
//! - The follower starts with no checkpoint once, while the live file has
//!   lines (a first start follows the live file; history is training's).
//!   After that it always resumes from a checkpoint it handed out: a clean
//!   restart from its last position, or a crash (`kill -9`) back to the
//!   last saved checkpoint, with the output cut back to the length saved
//!   with it (what the writer does).
//! - Every line that comes out is a complete line, no line comes out twice,
//!   and lines come out in the order they were written (which here is the
//!   order of their numbers, across files).
//! - Every complete line comes out, except lines of a live file that was
//!   cut in place without a copy (a writer restart): those the follower had
//!   not read when it was cut, or whose reading a crash rolled back, are
//!   gone with the bytes. (Lines it had read stay in the output, which
//!   only a crash cuts back.)
//! - A follower finds its way by the content it last read (the
//!   fingerprint of its last position). While that content exists nowhere
//!   (the live file was cut without a copy, and the follower has not read
//!   a line of the new content yet, or a crash took it back to a position
//!   in the old content) it cannot tell which rotated files came after
//!   it: lines that are only in rotated files during that window may be
//!   lost, or come out after lines written later (a restart reads the
//!   rotated files named after the last one it finished: a copy made by
//!   copytruncate within that window is one). It goes on with the live
//!   file. (This needs a writer restart and a rotation before the next
//!   poll.)

use std::collections::HashSet;

use proptest::prelude::*;

use super::sim::{Collected, Zeek};
use crate::follow::{Follower, Position};

/// What can happen to the log folder or the follower.
#[derive(Debug, Clone)]
enum Op {
    /// Zeek writes complete lines (creating the live file if needed).
    Append(u8),
    /// Zeek has written half of a line so far.
    AppendHalf,
    /// ... and now the rest of it.
    CompleteHalf,
    /// Zeek's rotation: the live file renamed in `current/`.
    Rotate,
    /// The archiver gzips the oldest renamed file into its dated folder.
    Archive,
    /// A writer restart: the live file cut to nothing in place.
    Truncate,
    /// logrotate's copytruncate, then Zeek writes `lines`; with `regrow`,
    /// as many more lines as the file had, so it is past the old offset
    /// before the follower looks.
    CopyTruncate { regrow: bool, lines: u8 },
    /// A new spool: the old live file rotated and archived, `current`
    /// pointed to a new folder.
    SwapCurrent,
    /// One step of the follower.
    Step,
    /// Steps until the follower has nothing to read.
    StepUntilIdle,
    /// The writer saves a checkpoint (the last position and the output's
    /// length).
    Checkpoint,
    /// A clean stop (checkpoint); a new follower starts from it at the
    /// next step, after whatever happens meanwhile.
    Restart,
    /// `kill -9`: the output cut back to the last checkpoint; a new
    /// follower starts from it at the next step.
    Kill,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..=12).prop_map(Op::Append),
        2 => Just(Op::AppendHalf),
        2 => Just(Op::CompleteHalf),
        3 => Just(Op::Rotate),
        3 => Just(Op::Archive),
        1 => Just(Op::Truncate),
        2 => (any::<bool>(), 0u8..=6).prop_map(|(regrow, lines)| Op::CopyTruncate { regrow, lines }),
        1 => Just(Op::SwapCurrent),
        4 => Just(Op::Step),
        4 => Just(Op::StepUntilIdle),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
        2 => Just(Op::Kill),
    ]
}

/// Steps allowed to reach an idle step: far more than any case needs.
const PATIENCE: usize = 10_000;

/// The log folder, the follower, and what must come out.
struct World {
    zeek: Zeek,
    /// `None` while stopped.
    follower: Option<Follower>,
    out: Collected,
    /// The checkpoint: output length and position.
    saved: (usize, Option<Position>),
    /// The half-written line, if any.
    half: Option<(u64, String)>,
    /// Lines the follower may never hand out: complete lines of files cut
    /// in place.
    may_be_lost: HashSet<u64>,
    /// Complete lines of the live file now.
    live_lines: Vec<u64>,
    complete: Vec<u64>,
}

impl World {
    /// Zeek writes lines and the follower reads them, then checkpoints:
    /// the first start.
    fn new(tsv: bool) -> World {
        let mut zeek = Zeek::new();
        zeek.tsv = tsv;
        let first = zeek.append(1);
        let mut w = World {
            follower: Some(zeek.follower(None)),
            zeek,
            out: Collected::default(),
            saved: (0, None),
            half: None,
            may_be_lost: HashSet::new(),
            live_lines: first.clone(),
            complete: first,
        };
        w.apply(&Op::StepUntilIdle);
        assert_eq!(w.out.numbers, [0], "the first line was not read");
        w.apply(&Op::Checkpoint);
        w
    }

    fn append(&mut self, n: u64) {
        self.complete_half();
        let lines = self.zeek.append(n);
        self.live_lines.extend(&lines);
        self.complete.extend(lines);
    }

    fn complete_half(&mut self) {
        if let Some((n, rest)) = self.half.take() {
            self.zeek.append_bytes(rest.as_bytes());
            self.live_lines.push(n);
            self.complete.push(n);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(n) => self.append(u64::from(*n)),
            Op::AppendHalf => {
                self.complete_half();
                self.zeek.start_file_if_new();
                let n = self.zeek.next;
                self.zeek.next += 1;
                let text = format!("{}\n", self.zeek.line(n));
                let (first, rest) = text.split_at(text.len() / 2);
                self.zeek.append_bytes(first.as_bytes());
                self.half = Some((n, rest.to_owned()));
            }
            Op::CompleteHalf => self.complete_half(),
            Op::Rotate => {
                self.complete_half();
                self.zeek.rotate();
                self.live_lines.clear();
            }
            Op::Archive => {
                if let Some(oldest) = self.zeek.renamed().first() {
                    self.zeek.archive(oldest);
                }
            }
            Op::Truncate => {
                // The half line dies with the bytes.
                self.half = None;
                self.may_be_lost.extend(self.live_lines.drain(..));
                self.zeek.truncate();
            }
            Op::CopyTruncate { regrow, lines } => {
                self.complete_half();
                if !self.zeek.live().exists() {
                    return;
                }
                let had = self.live_lines.len() as u64;
                self.zeek.copytruncate();
                self.live_lines.clear();
                let more = u64::from(*lines) + if *regrow { had } else { 0 };
                if more > 0 {
                    self.append(more);
                }
            }
            Op::SwapCurrent => {
                self.complete_half();
                self.zeek.swap_current();
                self.live_lines.clear();
            }
            Op::Step => {
                let step = self.running().step();
                self.out.take(step);
            }
            Op::StepUntilIdle => {
                self.running();
                let follower = self.follower.as_mut().expect("started");
                let idle = self.out.drain(follower, PATIENCE);
                assert!(idle, "no idle step in {PATIENCE} steps");
            }
            Op::Checkpoint => self.saved = (self.out.numbers.len(), self.out.position.clone()),
            Op::Restart => {
                self.apply(&Op::Checkpoint);
                self.follower = None;
            }
            Op::Kill => {
                self.out.numbers.truncate(self.saved.0);
                self.out.position = self.saved.1.clone();
                self.follower = None;
            }
        }
    }

    /// Does the content of this position still exist somewhere?
    fn anchored(&self, position: &Option<Position>) -> bool {
        position.as_ref().is_some_and(|p| self.zeek.holds(p))
    }

    /// The follower; a stopped one starts again from the checkpoint.
    fn running(&mut self) -> &mut Follower {
        self.follower
            .get_or_insert_with(|| self.zeek.follower(self.saved.1.clone()))
    }

    /// While the follower's position names content that exists nowhere,
    /// the lines it has not handed out that are only in rotated files may
    /// be lost (see the module doc).
    fn note_lost_anchor(&mut self) {
        if self.anchored(&self.out.position) {
            return;
        }
        let out: HashSet<u64> = self.out.numbers.iter().copied().collect();
        let live: HashSet<u64> = self.live_lines.iter().copied().collect();
        let rotated = self
            .complete
            .iter()
            .filter(|n| !out.contains(n) && !live.contains(n));
        self.may_be_lost.extend(rotated);
    }

    /// After a last look by the follower: the contract (see the module doc).
    fn check(&mut self) -> Result<(), TestCaseError> {
        self.apply(&Op::StepUntilIdle);
        let out = &self.out.numbers;
        prop_assert!(
            self.out.errors.is_empty(),
            "skipped lines: {:?}",
            self.out.errors
        );
        // In order, but for lines that may be lost, which may also come
        // out late (see the module doc), never early: every other line
        // comes after all that came out before it. Never twice.
        let mut newest: Option<u64> = None;
        for &n in out {
            if let Some(before) = newest.filter(|b| *b >= n) {
                prop_assert!(
                    self.may_be_lost.contains(&n),
                    "{} came out after {}: output {:?}",
                    n,
                    before,
                    out
                );
            }
            newest = newest.max(Some(n));
        }
        let once: HashSet<u64> = out.iter().copied().collect();
        prop_assert!(once.len() == out.len(), "a line came out twice: {:?}", out);
        let complete: HashSet<u64> = self.complete.iter().copied().collect();
        let never_written: Vec<u64> = out
            .iter()
            .filter(|n| !complete.contains(n))
            .copied()
            .collect();
        prop_assert!(
            never_written.is_empty(),
            "lines that were never complete came out: {:?}",
            never_written
        );
        let seen: HashSet<u64> = out.iter().copied().collect();
        let missing: Vec<u64> = self
            .complete
            .iter()
            .filter(|n| !seen.contains(n) && !self.may_be_lost.contains(n))
            .copied()
            .collect();
        prop_assert!(missing.is_empty(), "lost {:?}; output {:?}", missing, out);
        Ok(())
    }
}

fn cases() -> u32 {
    let default = if cfg!(debug_assertions) { 300 } else { 4000 };
    std::env::var("AZW_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every operation sequence: each complete line once, in order, except
    /// what a truncation without a copy took away unread.
    #[test]
    fn every_line_once_through_rotations_truncations_and_restarts(
        tsv in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let mut world = World::new(tsv);
        for op in &ops {
            world.apply(op);
            world.note_lost_anchor();
        }
        world.check()?;
    }
}

/// The case the model found on 2026-12-07 (CI had failed on it before,
/// uncaptured): a writer restart cuts the live file while the follower
/// is stopped; after it starts again, Zeek writes line 2, logrotate's
/// copytruncate copies it away and line 3 regrows the file to the same
/// size before the follower looks, so line 3 is read and the copy is not
/// known to come before it; a second restart, with the live file cut
/// again, finds the copy named after the last file finished and reads
/// line 2 after 3. Line 2 is inside the window the contract allows to be
/// lost: it comes out late, once, rather than not at all.
#[test]
fn a_copy_made_while_unanchored_may_come_out_late() {
    use Op::*;
    let ops = [
        Rotate,
        Append(1),
        Step,
        Checkpoint,
        Restart,
        Truncate,
        Step,
        Append(1),
        CopyTruncate {
            regrow: true,
            lines: 0,
        },
        Step,
        Restart,
        Truncate,
    ];
    let mut world = World::new(false);
    for op in &ops {
        world.apply(op);
        world.note_lost_anchor();
    }
    world.check().unwrap();
    assert_eq!(world.out.numbers, [0, 1, 3, 2]);
    assert!(world.may_be_lost.contains(&2));
}
