//! Which record times the stages that keep time believe.
//!
//! A record's `ts` is whatever the line says: a sensor with a broken
//! clock, a converter's bug or a forged line can date one record in the
//! year 2100, or at -1e200. Every stage that keeps a running "newest time"
//! or a window from it (the lanes' lag, the alert watermark, the detectors'
//! windows, the context features' decay) would keep that time for good:
//! one such record stopped every alert, turned the beacon detector off
//! (even across restarts, through the checkpoint), kept other windows open
//! for ever, and made a context state its own checkpoint could not load.
//! Such a record is still scored and written; those stages just do not
//! take its time.
//!
//! Believed: from 0 (relative captures start there) to a day past this
//! machine's clock (sensors' clocks drift, and time zones are a common
//! misconfiguration). Replays of history are in the past, so they see the
//! same results whenever they run.

/// How far past the wall clock a record's time is still believed.
pub const AHEAD_SECONDS: f64 = 86_400.0;

/// The latest record time believed now: a day past the wall clock.
pub fn latest() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(f64::MAX, |d| d.as_secs_f64() + AHEAD_SECONDS)
}

/// Believes record times as [`latest`] does, reading the clock only when
/// a time is later than the last bound it read (once, then for each
/// record that is not believed): a call per record costs a comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plausible {
    until: f64,
}

impl Plausible {
    pub fn believes(&mut self, ts: f64) -> bool {
        if ts.is_nan() || ts < 0.0 {
            return false;
        }
        if ts <= self.until {
            return true;
        }
        self.until = latest();
        ts <= self.until
    }
}

/// Whether the `n`th time not believed is logged: the 1st, 10th, 100th,
/// ...: a sensor whose clock is off makes every record one.
pub fn worth_logging(n: u64) -> bool {
    n > 0 && 10u64.pow(n.ilog10()) == n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn believes_the_past_and_the_next_day_only() {
        let mut p = Plausible::default();
        let now = latest() - AHEAD_SECONDS;
        for ts in [0.0, 1.5, 1_713_484_795.9, now, now + 3_600.0] {
            assert!(p.believes(ts), "{ts}");
        }
        for ts in [
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e200,
            now + 2.0 * AHEAD_SECONDS,
            4_102_444_800.0, // 2100-01-01
        ] {
            assert!(!p.believes(ts), "{ts}");
        }
        // Still believes what it did after refusing.
        assert!(p.believes(now));
    }

    #[test]
    fn the_first_then_every_power_of_ten_is_logged() {
        let logged: Vec<u64> = (0..=10_000).filter(|n| worth_logging(*n)).collect();
        assert_eq!(logged, [1, 10, 100, 1000, 10_000]);
    }
}
