//! Records held back briefly and handed out in event-time order.
//!
//! Context features read a key's state before the record updates it, so
//! the order of a host's records decides its scores. Repartitioning puts a
//! host's records in one partition, but in the order the members that
//! forwarded them happened to read the input partitions, which no two runs
//! share. Holding each record a little while and handing the held ones out
//! by `ts` (then `uid`) restores one order: the same records reach the
//! lanes in the same order in one member, in several, and in a replay of
//! the same records sorted by time.
//!
//! A record is held until the newest `ts` seen is `hold` past its own, or
//! it has waited `hold` of wall-clock time (a quiet stream), or the buffer
//! is full (records or bytes): memory stays bounded whatever the input. A
//! record with an absurd `ts` (an attacker's) only makes the others go out
//! sooner, in arrival order; nothing fails. Which partition and offset each
//! record came from is kept, so that offsets are never committed past a
//! record still held.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Where a held record came from, and its size for the byte limit.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
    pub bytes: usize,
}

/// One held record, with where it came from.
#[derive(Debug)]
pub struct Entry<T> {
    pub ts: f64,
    /// Breaks ties of `ts` (the record's `uid`).
    pub tie: String,
    pub partition: i32,
    pub offset: i64,
    arrived: Instant,
    bytes: usize,
    /// Arrival order: the last tie-break, so the order is total.
    seq: u64,
    pub item: T,
}

impl<T> Entry<T> {
    fn order(&self, other: &Self) -> Ordering {
        self.ts
            .total_cmp(&other.ts)
            .then_with(|| self.tie.cmp(&other.tie))
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.order(other) == Ordering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

/// How long and how much is held.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Event time and wall-clock time a record may wait.
    pub hold: Duration,
    pub max_records: usize,
    /// Sum of the sizes the caller gives (the messages' lengths).
    pub max_bytes: usize,
}

impl Limits {
    /// 100,000 records or 64 MiB of messages, whichever comes first.
    pub fn new(hold: Duration) -> Limits {
        Limits {
            hold,
            max_records: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// The held records, earliest `ts` first.
#[derive(Debug)]
pub struct Held<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    limits: Limits,
    bytes: usize,
    newest_ts: f64,
    seq: u64,
}

impl<T> Held<T> {
    pub fn new(limits: Limits) -> Held<T> {
        Held {
            heap: BinaryHeap::new(),
            limits,
            bytes: 0,
            newest_ts: f64::NEG_INFINITY,
            seq: 0,
        }
    }

    /// Whether records are held at all (a hold of zero scores on arrival).
    pub fn holds(&self) -> bool {
        !self.limits.hold.is_zero()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Holds a record, ordered by `ts` then `tie`. `ts` must be finite
    /// (the caller scores a record without a usable time at once: it has
    /// no place in the order).
    pub fn push(&mut self, (ts, tie): (f64, String), origin: Origin, now: Instant, item: T) {
        debug_assert!(ts.is_finite());
        let Origin {
            partition,
            offset,
            bytes,
        } = origin;
        self.newest_ts = self.newest_ts.max(ts);
        self.bytes = self.bytes.saturating_add(bytes);
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            ts,
            tie,
            partition,
            offset,
            arrived: now,
            bytes,
            seq: self.seq,
            item,
        }));
    }

    /// The earliest record if it is due: held long enough (event time or
    /// wall clock), or the buffer is over a limit.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry<T>> {
        let Reverse(first) = self.heap.peek()?;
        let hold = self.limits.hold;
        let due = self.heap.len() > self.limits.max_records
            || self.bytes > self.limits.max_bytes
            || first.ts + hold.as_secs_f64() <= self.newest_ts
            || now.saturating_duration_since(first.arrived) >= hold;
        if due {
            self.pop()
        } else {
            None
        }
    }

    /// The earliest record, due or not (a clean stop hands all out).
    pub fn pop(&mut self) -> Option<Entry<T>> {
        let Reverse(first) = self.heap.pop()?;
        self.bytes = self.bytes.saturating_sub(first.bytes);
        Some(first)
    }

    /// Per partition, the lowest offset still held: offsets may be
    /// committed up to it, not past it.
    pub fn floors(&self) -> HashMap<i32, i64> {
        let mut floors: HashMap<i32, i64> = HashMap::new();
        for Reverse(e) in &self.heap {
            floors
                .entry(e.partition)
                .and_modify(|f| *f = (*f).min(e.offset))
                .or_insert(e.offset);
        }
        floors
    }

    /// Forgets the records of partitions `keep` refuses (handed to another
    /// member, which reads them again from the committed offset).
    pub fn retain_partitions(&mut self, mut keep: impl FnMut(i32) -> bool) {
        self.heap.retain(|Reverse(e)| keep(e.partition));
        self.bytes = self.heap.iter().map(|Reverse(e)| e.bytes).sum();
    }
}

/// Which messages of the repartition topic a member has taken (held or
/// scored): after a rebalance that left a partition here, it is fetched
/// again from its committed offset (at most the first record held), and
/// what comes before the offset seen was taken already.
#[derive(Debug, Default)]
pub struct Taken {
    /// Per partition, the offset after the last message taken.
    seen: HashMap<i32, i64>,
}

impl Taken {
    /// Whether this message is to be taken (false: it was before).
    pub fn first_time(&mut self, partition: i32, offset: i64) -> bool {
        match self.seen.get(&partition) {
            Some(&next) if offset < next => false,
            _ => {
                self.seen.insert(partition, offset + 1);
                true
            }
        }
    }

    /// Forgets the partitions not kept (their next owner reads them again
    /// from the committed offset).
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        self.seen.retain(|p, _| keep(*p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64, bytes: usize) -> Origin {
        Origin {
            partition,
            offset,
            bytes,
        }
    }

    fn limits(hold: u64) -> Limits {
        Limits::new(Duration::from_secs(hold))
    }

    fn drain<T>(held: &mut Held<T>) -> Vec<T> {
        std::iter::from_fn(|| held.pop().map(|e| e.item)).collect()
    }

    #[test]
    fn records_go_out_by_time_then_uid_whatever_the_arrival() {
        let now = Instant::now();
        let records = [
            (5.0, "C5"),
            (1.0, "Cb"),
            (3.0, "C3"),
            (1.0, "Ca"),
            (2.0, "C2"),
        ];
        let mut a = Held::new(limits(3600));
        for (i, (ts, uid)) in records.iter().enumerate() {
            a.push((*ts, uid.to_string()), at(0, i as i64, 10), now, *uid);
        }
        let mut b = Held::new(limits(3600));
        for (i, (ts, uid)) in records.iter().enumerate().rev() {
            b.push((*ts, uid.to_string()), at(1, i as i64, 10), now, *uid);
        }
        let want = ["Ca", "Cb", "C2", "C3", "C5"];
        assert_eq!(drain(&mut a), want);
        assert_eq!(drain(&mut b), want);
    }

    #[test]
    fn a_record_is_due_once_event_time_or_the_clock_passed_its_hold() {
        let now = Instant::now();
        let mut held = Held::new(limits(10));
        held.push((100.0, "A".into()), at(0, 0, 1), now, "A");
        held.push((105.0, "B".into()), at(0, 1, 1), now, "B");
        assert!(held.pop_due(now).is_none(), "nothing is 10 s old yet");
        held.push((110.0, "C".into()), at(0, 2, 1), now, "C");
        assert_eq!(held.pop_due(now).map(|e| e.item), Some("A"));
        assert!(held.pop_due(now).is_none());
        // A quiet stream: the wall clock lets the rest out.
        let later = now + Duration::from_secs(10);
        assert_eq!(held.pop_due(later).map(|e| e.item), Some("B"));
        assert_eq!(held.pop_due(later).map(|e| e.item), Some("C"));
        assert!(held.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_records_and_bytes() {
        let now = Instant::now();
        let mut held = Held::new(Limits {
            hold: Duration::from_secs(3600),
            max_records: 3,
            max_bytes: 1000,
        });
        for i in 0..3 {
            held.push((i as f64, String::new()), at(0, i, 10), now, i);
        }
        assert!(held.pop_due(now).is_none());
        held.push((10.0, String::new()), at(0, 3, 10), now, 3);
        assert_eq!(held.pop_due(now).map(|e| e.item), Some(0));
        assert!(held.pop_due(now).is_none());
        held.push((0.5, String::new()), at(0, 4, 2000), now, 4);
        assert_eq!(held.pop_due(now).map(|e| e.item), Some(4));
        assert!(held.pop_due(now).is_none());
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn an_absurd_time_only_lets_the_others_out_sooner() {
        let now = Instant::now();
        let mut held = Held::new(limits(60));
        held.push((1.0, "A".into()), at(0, 0, 1), now, "A");
        held.push((1e300, "X".into()), at(0, 1, 1), now, "X");
        // Everything is due at once (the absurd one too: within a float's
        // precision it is past itself), in order.
        assert_eq!(held.pop_due(now).map(|e| e.item), Some("A"));
        assert_eq!(held.pop_due(now).map(|e| e.item), Some("X"));
        assert!(held.is_empty());
    }

    #[test]
    fn offsets_are_held_back_to_the_lowest_held_per_partition() {
        let now = Instant::now();
        let mut held = Held::new(limits(3600));
        held.push((3.0, String::new()), at(0, 7, 1), now, ());
        held.push((1.0, String::new()), at(0, 9, 1), now, ());
        held.push((2.0, String::new()), at(2, 4, 1), now, ());
        assert_eq!(held.floors(), HashMap::from([(0, 7), (2, 4)]));
        held.retain_partitions(|p| p != 0);
        assert_eq!(held.floors(), HashMap::from([(2, 4)]));
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn a_message_taken_before_a_rebalance_is_not_taken_again() {
        let mut taken = Taken::default();
        assert!((0..10).all(|o| taken.first_time(2, o)));
        // The partition stayed here and is read again from offset 4.
        let again: Vec<i64> = (4..12).filter(|o| taken.first_time(2, *o)).collect();
        assert_eq!(again, vec![10, 11]);
        // Moved away and back: read as new.
        taken.retain_partitions(|p| p != 2);
        assert!(taken.first_time(2, 4));
    }
}
