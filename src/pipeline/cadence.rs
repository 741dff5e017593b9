//! How often a run checkpoints: every `--checkpoint-ms`, or less often when
//! a checkpoint is costly.
//!
//! A checkpoint writes the whole context, detector and alert state. On a
//! busy sensor that is a large file (about 150 MB for 300,000 hosts), and
//! rewriting it every second made live mode about 30% slower while it
//! caught up, and wrote that much to the disk every second for good. So the
//! next timed checkpoint waits at least [`STRETCH`] times as long as the
//! last one took: checkpoints take at most a twentieth of the time, and a
//! small state keeps the configured pace. A crash costs the records since
//! the last checkpoint being scored again (the output is cut back to it),
//! so the wait is capped at [`LONGEST`].

use std::time::{Duration, Instant};

/// The wait after a checkpoint, in multiples of the time it took.
pub const STRETCH: u32 = 20;

/// The longest wait between timed checkpoints, however costly they are.
pub const LONGEST: Duration = Duration::from_secs(60);

/// When the next timed checkpoint is due.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    every: Duration,
    cost: Duration,
    last: Instant,
}

impl Cadence {
    /// Checkpoints every `every` while they are cheap; the first is due
    /// `every` from now.
    pub fn new(every: Duration) -> Cadence {
        Cadence {
            every,
            cost: Duration::ZERO,
            last: Instant::now(),
        }
    }

    /// The wait between timed checkpoints now.
    pub fn interval(&self) -> Duration {
        self.every
            .max(self.cost.saturating_mul(STRETCH).min(LONGEST))
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.interval()
    }

    /// Whether a checkpoint before the timed one (a Kafka member's backlog)
    /// keeps checkpoints within their share of the time.
    pub fn early_allowed(&self) -> bool {
        self.last.elapsed() >= self.cost.saturating_mul(STRETCH).min(LONGEST)
    }

    /// A checkpoint was taken, started at `started`: the next is due an
    /// interval from now.
    pub fn saved(&mut self, started: Instant) {
        self.last = Instant::now();
        self.cost = self.last.saturating_duration_since(started);
    }

    /// A checkpoint was taken whose cost is not measured (one forced by a
    /// reopen): the next timed one is an interval from now.
    pub fn restart(&mut self) {
        self.last = Instant::now();
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
        c.last = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("up for 10 s");
        assert!(c.due());
        let started = Instant::now();
        c.saved(started);
        assert!(!c.due());
        // A checkpoint that cost nothing allows the next early.
        c.cost = Duration::ZERO;
        assert!(c.early_allowed());
        c.cost = Duration::from_secs(1);
        assert!(!c.early_allowed());
    }
}
