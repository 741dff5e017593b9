//! How often a run checkpoints: every `--checkpoint-ms`, or less often when
//! a checkpoint is costly or large.
//!
//! A checkpoint writes the whole context, detector and alert state. On a
//! busy sensor that is a large file (about 150 MB for 300,000 hosts, 380
//! MB in a flood of new sources), and rewriting it every second made live
//! mode about 30% slower while it caught up, and wrote that much to the
//! disk every second for good. So the next timed checkpoint waits at least
//! [`STRETCH`] times as long as the last one took (checkpoints take at
//! most a twentieth of the time), capped at [`LONGEST`].
//!
//! Time alone still let a 260 MB state be rewritten every minute: 375 GB
//! a day, months of a sensor's SSD endurance in a year. So live mode also
//! keeps to a write budget (`--checkpoint-mb-per-hour`): after a
//! checkpoint of `B` bytes the next waits `B / budget`, capped at
//! [`LONGEST_FOR_SIZE`]. A small state keeps the configured pace. What a
//! longer wait costs is a crash's: the records since the last checkpoint
//! are scored again on restart (the output is cut back to it): about a
//! minute for an hour of a busy sensor (9 million records), where a live
//! start read a million in 7.4 s. Only where a restart cuts every output
//! back: elsewhere what a crash repeats is duplicates, so the budget is
//! not applied there.

use std::time::{Duration, Instant};

/// The wait after a checkpoint, in multiples of the time it took.
pub const STRETCH: u32 = 20;

/// The longest wait between timed checkpoints, however costly they are.
pub const LONGEST: Duration = Duration::from_secs(60);

/// The longest wait the write budget sets, however large the state: a
/// crash scores at most about this much again.
pub const LONGEST_FOR_SIZE: Duration = Duration::from_secs(3600);

/// When the next timed checkpoint is due.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    every: Duration,
    cost: Duration,
    /// The size of the last checkpoint, in bytes.
    size: u64,
    /// Bytes a second the checkpoints may write on average (`None`: no
    /// budget).
    budget: Option<f64>,
    /// When the last checkpoint was saved; `None`: at a time this process
    /// cannot count back to (one resumed from, saved "in the future" by a
    /// clock stepped back since, or too long ago for an `Instant`), so the
    /// next is due at once.
    last: Option<Instant>,
}

impl Cadence {
    /// Checkpoints every `every` while they are cheap; the first is due
    /// `every` from now.
    pub fn new(every: Duration) -> Cadence {
        Cadence {
            every,
            cost: Duration::ZERO,
            size: 0,
            budget: None,
            last: Some(Instant::now()),
        }
    }

    /// Keeps the checkpoints to `mb_per_hour` megabytes an hour on average
    /// (0 or less: no budget), the last one having been `size` bytes.
    pub fn with_budget(self, mb_per_hour: f64, size: u64) -> Cadence {
        Cadence {
            budget: (mb_per_hour > 0.0).then_some(mb_per_hour * 1e6 / 3600.0),
            size,
            ..self
        }
    }

    /// The last checkpoint (the one a start resumed from) was saved `age`
    /// ago: the next is due an interval after it, not after this start.
    /// Else a restart that scores again what came since would wait a whole
    /// interval more before saving, and crashes closer together than that
    /// would never move the checkpoint on.
    pub fn saved_ago(self, age: Duration) -> Cadence {
        Cadence {
            last: Instant::now().checked_sub(age),
            ..self
        }
    }

    /// The wait between timed checkpoints now.
    pub fn interval(&self) -> Duration {
        self.every.max(self.least())
    }

    /// The least wait after the last checkpoint, set by what it cost and
    /// by its size.
    fn least(&self) -> Duration {
        let for_cost = self.cost.saturating_mul(STRETCH).min(LONGEST);
        let for_size = self.budget.map_or(Duration::ZERO, |per_second| {
            let secs = self.size as f64 / per_second;
            Duration::from_secs_f64(secs.min(LONGEST_FOR_SIZE.as_secs_f64()))
        });
        for_cost.max(for_size)
    }

    /// The size of the last checkpoint, in bytes (0 before the first is
    /// measured).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn due(&self) -> bool {
        self.elapsed() >= self.interval()
    }

    fn elapsed(&self) -> Duration {
        self.last.map_or(Duration::MAX, |l| l.elapsed())
    }

    /// Whether a checkpoint before the timed one (a Kafka member's backlog)
    /// keeps checkpoints within their share of the time.
    pub fn early_allowed(&self) -> bool {
        self.elapsed() >= self.least()
    }

    /// A checkpoint of `size` bytes was taken, started at `started`: the
    /// next is due an interval from now.
    pub fn saved(&mut self, started: Instant, size: u64) {
        let now = Instant::now();
        self.last = Some(now);
        self.cost = now.saturating_duration_since(started);
        self.size = size;
    }

    /// A checkpoint of `size` bytes was taken out of turn (forced by a
    /// reopen, a new output file, a log type's first position), its cost
    /// not measured: the next timed one is an interval from now, so the
    /// two do not come back to back.
    pub fn saved_out_of_turn(&mut self, size: u64) {
        self.last = Some(Instant::now());
        self.size = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_costly_checkpoint_waits_longer_up_to_a_minute() {
        let every = Duration::from_millis(1000);
        let mut c = Cadence::new(every);
        assert_eq!(c.interval(), every);
        // A cheap one keeps the pace.
        c.cost = Duration::from_millis(10);
        assert_eq!(c.interval(), every);
        // A 300 ms one: six seconds.
        c.cost = Duration::from_millis(300);
        assert_eq!(c.interval(), Duration::from_secs(6));
        c.cost = Duration::from_secs(10);
        assert_eq!(c.interval(), LONGEST);
        // The configured pace when it is slower than that.
        let c = Cadence {
            every: Duration::from_secs(600),
            ..c
        };
        assert_eq!(c.interval(), Duration::from_secs(600));
    }

    #[test]
    fn due_an_interval_after_the_last() {
        let mut c = Cadence::new(Duration::from_secs(5));
        assert!(!c.due());
        c.last = Instant::now().checked_sub(Duration::from_secs(10));
        assert!(c.due());
        let started = Instant::now();
        c.saved(started, 0);
        assert!(!c.due());
        // A checkpoint that cost nothing allows the next early.
        c.cost = Duration::ZERO;
        assert!(c.early_allowed());
        c.cost = Duration::from_secs(1);
        assert!(!c.early_allowed());
    }

    #[test]
    fn a_large_checkpoint_waits_for_the_write_budget_up_to_an_hour() {
        let every = Duration::from_millis(1000);
        // 1,024 MB an hour: 284,444 bytes a second.
        let mut c = Cadence::new(every).with_budget(1024.0, 0);
        assert_eq!(c.interval(), every);
        // A small state keeps the configured pace.
        c.saved(Instant::now(), 200_000);
        assert_eq!(c.interval(), every);
        // 150 MB, however cheap to write: 150e6 / (1024e6 / 3600) = 527.3 s.
        c.size = 150_000_000;
        c.cost = Duration::ZERO;
        let secs = c.interval().as_secs_f64();
        assert!((secs - 527.34375).abs() < 1e-6, "{secs}");
        // Early saves wait as long.
        assert!(!c.early_allowed());
        // 2 GB: capped at an hour.
        c.size = 2_000_000_000;
        assert_eq!(c.interval(), LONGEST_FOR_SIZE);
        // The cost rule still applies when it asks for longer.
        let c = Cadence {
            size: 1_000_000,
            cost: Duration::from_secs(2),
            ..c
        };
        assert_eq!(c.interval(), Duration::from_secs(40));
        // No budget (0): size alone changes nothing.
        let c = Cadence::new(every).with_budget(0.0, 2_000_000_000);
        assert_eq!(c.interval(), every);
    }

    #[test]
    fn a_resumed_checkpoint_paces_the_first_save_from_when_it_was_saved() {
        let c = Cadence::new(Duration::from_secs(1)).with_budget(3.6, 10_000);
        // 3.6 MB an hour is 1,000 bytes a second: 10 s for 10,000 bytes.
        assert_eq!(c.interval(), Duration::from_secs(10));
        assert!(!c.due());
        // Saved 4 s before this start: 6 s to go.
        let c = c.saved_ago(Duration::from_secs(4));
        assert!(!c.due());
        // Saved 12 s before: due at once (a crash loop moves it on).
        let mut c = c.saved_ago(Duration::from_secs(12));
        assert!(c.due());
        // Older than the machine can count back to: due at once too.
        c.last = None;
        assert!(c.due() && c.early_allowed());
        // A save out of turn restarts the wait.
        c.saved_out_of_turn(10_000);
        assert!(!c.due());
    }
}
