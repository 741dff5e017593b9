//! Connections reported while still open, counted once.
//!
//! Where the zeek-long-connections package runs, `conn_long.log` reports
//! an open connection each time it passes one of its durations, with the
//! duration and bytes so far and the same uid each time; the final conn
//! record has the whole of them. A detector that adds up what a pair's
//! connections did (their hours, their bytes) would count a connection
//! once per report. So each pair remembers its last few reported
//! connections and what of them is counted: a report adds only the growth
//! since the one before, the final record only what the reports had not
//! counted, and a report read after the final record (a replay reads
//! conn.log before conn_long.log) nothing.

use serde::{Deserialize, Serialize};

/// Connections of one pair whose reports are remembered, at most: more
/// open at once between two hosts is rare, and an older one forgotten is
/// at worst counted again by its final record.
pub const REPORTED_PER_PAIR: usize = 4;

/// The shortest connection whose final record is remembered against
/// reports read after it: the package reports at 10 minutes at the
/// earliest by default; a minute leaves room for sites that report sooner,
/// and keeps the many short connections out of the pairs' memory.
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

/// A reported connection and how much of it is counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted<A> {
    uid: Box<str>,
    #[serde(flatten)]
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

/// Counts one record of a pair against the pair's remembered connections
/// `seen` (oldest first). `amounts` are the record's own; `open` says it
/// is an interim report; `remember` says whether a connection not seen
/// before is to be remembered (always for a report; for a final record
/// only when reports of it may still be read). A record without a uid is
/// always new and never remembered.
pub fn count<A: Amounts>(
    seen: &mut Vec<Counted<A>>,
    uid: Option<&str>,
    amounts: A,
    open: bool,
    remember: bool,
) -> Added<A> {
    let Some(uid) = uid else {
        return Added::New(amounts);
    };
    if let Some(s) = seen.iter_mut().find(|s| &*s.uid == uid) {
        if s.closed {
            return Added::Nothing;
        }
        let growth = amounts.growth(s.counted);
        s.counted = s.counted.most(amounts);
        s.closed = !open;
        return Added::More(growth);
    }
    if remember || open {
        if seen.len() >= REPORTED_PER_PAIR {
            seen.remove(0);
        }
        seen.push(Counted {
            uid: uid.into(),
            counted: amounts,
            closed: !open,
        });
    }
    Added::New(amounts)
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

    #[test]
    fn reports_add_their_growth_and_the_final_record_the_rest_once() {
        let mut seen = Vec::new();
        assert_eq!(
            count(&mut seen, Some("C1"), s(600.0), true, false),
            Added::New(s(600.0))
        );
        assert_eq!(
            count(&mut seen, Some("C1"), s(1800.0), true, false),
            Added::More(s(1200.0))
        );
        // A report out of order adds nothing and forgets nothing.
        assert_eq!(
            count(&mut seen, Some("C1"), s(900.0), true, false),
            Added::More(s(0.0))
        );
        assert_eq!(
            count(&mut seen, Some("C1"), s(2000.0), false, false),
            Added::More(s(200.0))
        );
        assert_eq!(
            count(&mut seen, Some("C1"), s(3600.0), true, false),
            Added::Nothing,
            "a report read after the final record"
        );
    }

    #[test]
    fn final_records_are_remembered_only_when_asked_and_memory_is_bounded() {
        let mut seen = Vec::new();
        assert_eq!(
            count(&mut seen, Some("C1"), s(5.0), false, false),
            Added::New(s(5.0))
        );
        assert!(seen.is_empty());
        count(&mut seen, Some("C1"), s(5.0), false, true);
        assert_eq!(
            count(&mut seen, Some("C1"), s(4.0), true, false),
            Added::Nothing
        );
        for i in 0..100 {
            count(&mut seen, Some(&format!("C{i}")), s(1.0), true, false);
        }
        assert_eq!(seen.len(), REPORTED_PER_PAIR);
        assert_eq!(&*seen[REPORTED_PER_PAIR - 1].uid, "C99");
        assert_eq!(
            count(&mut seen, None, s(7.0), true, true),
            Added::New(s(7.0))
        );
        assert_eq!(&*seen[REPORTED_PER_PAIR - 1].uid, "C99");
    }

    #[test]
    fn the_amounts_are_saved_beside_the_uid() {
        let c = Counted {
            uid: "C1".into(),
            counted: s(2.5),
            closed: true,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"uid":"C1","duration":2.5,"closed":true}"#);
        assert_eq!(serde_json::from_str::<Counted<Secs>>(&text).unwrap(), c);
    }
}
