//! Connections reported while still open, counted once.
//!
//! Where the zeek-long-connections package runs, `conn_long.log` reports
//! an open connection each time it passes one of its durations, with the
//! duration and bytes so far and the same uid each time; the final conn
//! record has the whole of them. A detector that adds up what a pair's
//! connections did (their hours, their bytes) would count a connection
//! once per report. So the detector remembers its reported connections by
//! pair and uid, and what of each is counted: a report adds only the growth
//! since the one before, the final record only what the reports had not
//! counted, and a report read after the final record (a replay reads
//! conn.log before conn_long.log) nothing.
//!
//! Remembered per detector, not per pair: a pair of many parallel streams
//! (an S3 multipart upload, rclone's transfers) or of many short
//! connections beside one long one must not forget the long one, which
//! would then be counted whole again at its next report. When full, the
//! closed ones go first (they matter only if a report of them is still to
//! be read), then the least recently reported.

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;

/// Connections remembered per detector, at most: open at once and
/// reported, or closed within the last stretch of a replay's reading.
pub const MAX_REPORTED: usize = 100_000;

/// The shortest connection whose final record is remembered against
/// reports read after it: the package reports at 10 minutes at the
/// earliest by default; a minute leaves room for sites that report sooner,
/// and keeps the many short connections out of the memory.
pub const REPORTABLE_SECONDS: f64 = 60.0;

/// What a detector counts of a connection. A report holds the amounts so
/// far, so what it adds is its growth over what was counted.
pub trait Amounts: Copy {
    /// What `self` adds to `counted` (never less than nothing: a report
    /// whose bytes went backwards adds none).
    fn growth(self, counted: Self) -> Self;
    /// The larger of the two, amount by amount: what is counted after.
    fn most(self, other: Self) -> Self;
}

/// How much of a connection is counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Counted<A> {
    counted: A,
    /// Its final conn record was read: later reports add nothing.
    closed: bool,
}

/// What a record adds to its pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Added<A> {
    /// A connection not counted before: all of it.
    New(A),
    /// One counted before: its growth since.
    More(A),
    /// One whose final record was counted already: nothing.
    Nothing,
}

/// A detector's reported connections, by (source, destination, uid).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reported<A> {
    conns: BoundedMap<(IpAddr, IpAddr, CompactString), Counted<A>>,
}

impl<A> Default for Reported<A> {
    fn default() -> Self {
        Reported::new(MAX_REPORTED)
    }
}

impl<A> Reported<A> {
    pub fn new(cap: usize) -> Self {
        Reported {
            conns: BoundedMap::new(cap),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.conns.len()
    }
}

impl<A: Amounts> Reported<A> {
    /// Counts one record of the pair `(src, dst)`. `amounts` are the
    /// record's own; `open` says it is an interim report; `remember` says
    /// whether a connection not seen before is to be remembered (always
    /// for a report; for a final record only when reports of it may still
    /// be read). A record without a uid is always new and never
    /// remembered.
    pub fn count(
        &mut self,
        (src, dst): (IpAddr, IpAddr),
        uid: Option<&CompactString>,
        amounts: A,
        open: bool,
        remember: bool,
    ) -> Added<A> {
        let Some(uid) = uid else {
            return Added::New(amounts);
        };
        if self.conns.len() == 0 && !open && !remember {
            // Nothing reported in this run: no lookup per record.
            return Added::New(amounts);
        }
        let key = (src, dst, uid.clone());
        if let Some(s) = self.conns.get_mut(&key) {
            if s.closed {
                return Added::Nothing;
            }
            let growth = amounts.growth(s.counted);
            s.counted = s.counted.most(amounts);
            s.closed = !open;
            return Added::More(growth);
        }
        if remember || open {
            let fresh = Counted {
                counted: amounts,
                closed: !open,
            };
            self.conns
                .touch_ranked(key, || fresh, |s| if s.closed { 0.0 } else { 1.0 });
        }
        Added::New(amounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    struct Secs {
        duration: f64,
    }

    impl Amounts for Secs {
        fn growth(self, counted: Self) -> Self {
            Secs {
                duration: (self.duration - counted.duration).max(0.0),
            }
        }
        fn most(self, other: Self) -> Self {
            Secs {
                duration: self.duration.max(other.duration),
            }
        }
    }

    fn s(duration: f64) -> Secs {
        Secs { duration }
    }

    const PAIR: (IpAddr, IpAddr) = (
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5)),
        IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9)),
    );

    fn uid(u: &str) -> CompactString {
        u.into()
    }

    #[test]
    fn reports_add_their_growth_and_the_final_record_the_rest_once() {
        let mut r = Reported::default();
        let c1 = uid("C1");
        let mut count = |d: f64, open: bool| r.count(PAIR, Some(&c1), s(d), open, false);
        assert_eq!(count(600.0, true), Added::New(s(600.0)));
        assert_eq!(count(1800.0, true), Added::More(s(1200.0)));
        // A report out of order adds nothing and forgets nothing.
        assert_eq!(count(900.0, true), Added::More(s(0.0)));
        assert_eq!(count(2000.0, false), Added::More(s(200.0)));
        assert_eq!(
            count(3600.0, true),
            Added::Nothing,
            "a report read after the final record"
        );
        // The same uid between other hosts is another connection.
        let other = (PAIR.1, PAIR.0);
        assert_eq!(
            r.count(other, Some(&c1), s(5.0), true, false),
            Added::New(s(5.0))
        );
    }

    #[test]
    fn final_records_are_remembered_only_when_asked() {
        let mut r = Reported::default();
        let c1 = uid("C1");
        assert_eq!(
            r.count(PAIR, Some(&c1), s(5.0), false, false),
            Added::New(s(5.0))
        );
        assert_eq!(r.len(), 0);
        r.count(PAIR, Some(&c1), s(5.0), false, true);
        assert_eq!(
            r.count(PAIR, Some(&c1), s(4.0), true, false),
            Added::Nothing
        );
        assert_eq!(r.count(PAIR, None, s(7.0), true, true), Added::New(s(7.0)));
        assert_eq!(r.len(), 1);
    }

    /// A pair's long connection, still open, is not forgotten for the many
    /// connections beside it, closed or open, up to the bound: closed ones
    /// go first.
    #[test]
    fn an_open_connection_outlasts_the_closed_ones_beside_it() {
        let mut r = Reported::new(64);
        let long = uid("CLong");
        assert_eq!(
            r.count(PAIR, Some(&long), s(600.0), true, false),
            Added::New(s(600.0))
        );
        for i in 0..1000 {
            r.count(PAIR, Some(&uid(&format!("C{i}"))), s(90.0), false, true);
        }
        for i in 0..40 {
            r.count(PAIR, Some(&uid(&format!("O{i}"))), s(60.0), true, false);
        }
        assert!(r.len() <= 64);
        assert_eq!(
            r.count(PAIR, Some(&long), s(3600.0), true, false),
            Added::More(s(3000.0)),
            "remembered through 1,040 others"
        );
    }

    #[test]
    fn the_counts_are_saved_and_read_back() {
        let mut r = Reported::default();
        r.count(PAIR, Some(&uid("C1")), s(2.5), true, false);
        let text = serde_json::to_string(&r).unwrap();
        let mut back: Reported<Secs> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.count(PAIR, Some(&uid("C1")), s(3.0), false, false),
            Added::More(s(0.5))
        );
    }
}
