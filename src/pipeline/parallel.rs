//! One stream of lines scored on several threads, its results taken back
//! in input order.
//!
//! Scoring a record with a trained model changes nothing, so it can run
//! anywhere; what depends on the order (a lane's counters and filter, the
//! detectors, the output, the top anomalies) must not. So: one thread reads
//! and parses, and deals chunks of lines to the workers in turn; each
//! worker ([`LaneWorker`]) scores its chunks a block at a time; the calling
//! thread takes the workers' results in the same turn, which is input
//! order, with no reordering buffer, and applies them ([`Lane::take`]).
//! Reading, scoring and writing overlap, and every channel is bounded, so
//! memory stays flat however long the stream.
//!
//! A model with context features has its context features encoded on the
//! reading thread, in input order (its state must see every record in
//! order); the workers encode the rest of each vector (the same bits as
//! encoding it whole, tested), then run KitNET and the output. The reading
//! thread was a replay's slowest stage: it now parses and keeps the
//! context, and leaves the rarity lookups, logarithms and one-hot columns
//! to the workers.

use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::lane::{kept_records, Lane, LaneWorker, Scored};
use crate::allow::{Action, Allowlist, Rules};
use crate::features::{ContextState, Encoder, FieldCache};
use crate::zeek::{ReadError, Record};
use crate::LogKind;

/// Lines per chunk: large enough that a channel message per chunk costs
/// nothing next to scoring it, small enough that the first results come
/// soon and the chunks in flight (two queued per worker each way) stay a
/// few megabytes.
pub const CHUNK: usize = 512;

/// A chunk is closed sooner once its records hold this many bytes
/// ([`Record::heap_bytes`]): 512 ordinary records hold about 400 KB, but
/// 512 lines near the 1 MiB line cap hold half a gigabyte, and a dozen
/// chunks can be in flight (queued to each worker, being scored, waiting
/// to be freed). With this budget they hold a few dozen megabytes
/// whatever the lines.
pub const CHUNK_BYTES: usize = 4 << 20;

/// One scoring thread per processor the system lets this process use (1
/// if it cannot tell): the default of `--threads`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a stream handed to [`score_parallel`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every line was taken.
    Done,
    /// `take` asked to stop.
    Stopped,
    /// The source failed (a fatal read error, with why), after every line
    /// before the failure was taken.
    Failed(String),
}

type Lines = Vec<Result<Record, ReadError>>;

struct Chunk {
    lines: Lines,
    /// Per line, whether the allowlist dropped it (empty: none did).
    dropped: Vec<bool>,
    /// The allowlist's rules the chunk's lines were judged by (one version
    /// a chunk), for its `no_alert` rules (`None`: no allowlist).
    rules: Option<Arc<Rules>>,
    /// The records' feature vectors, their context features filled, when
    /// the reading thread keeps the context.
    vectors: Option<Vec<f64>>,
    end: Option<String>,
}

struct Results {
    scored: Vec<Scored>,
    end: Option<String>,
}

/// Scores `lines` (a reader: a non-skip error is fatal and ends it) with
/// `threads` workers of `lane` (at least one, besides the reading thread
/// and the caller's), handing every line's [`Scored`] to `take` in input
/// order. `take` returns `Ok(false)` to stop early (a signal); its error
/// stops the run and is returned. On return every thread has ended.
/// A lane's allowlist decides on the reading thread, in order, which
/// records it drops (before they are encoded: they do not feed the
/// context); the workers apply its `no_alert` rules of the same version
/// (a reload closes the chunk being gathered).
pub fn score_parallel<I, E>(
    lines: I,
    threads: usize,
    lane: &mut Lane,
    mut take: impl FnMut(&mut Lane, Scored) -> Result<bool, E>,
) -> Result<End, E>
where
    I: Iterator<Item = Result<Record, ReadError>> + Send,
{
    // The context state goes to the reading thread first, so the workers'
    // scorers are cloned without it: they never read it, and a copy of a
    // state of a million keys per worker per call (Kafka calls this once a
    // batch) cost more than the scoring.
    let encoding = lane.take_encoding();
    let allow = lane.take_allowlist().map(|a| (lane.module(), a));
    let workers: Vec<LaneWorker> = (0..threads.max(1)).map(|_| lane.worker()).collect();
    let (end, context) = std::thread::scope(|scope| {
        let mut to_workers: Vec<SyncSender<Chunk>> = Vec::new();
        let mut from_workers: Vec<Receiver<Results>> = Vec::new();
        // Scored lines go back to the reading thread to be freed there (see
        // `LaneWorker::score`); at most the chunks in flight wait in it.
        let (spent_tx, spent_rx) = channel::<Lines>();
        for mut worker in workers {
            let (tx, rx) = sync_channel::<Chunk>(2);
            let (results_tx, results_rx) = sync_channel::<Results>(2);
            let spent = spent_tx.clone();
            scope.spawn(move || {
                for mut chunk in rx {
                    let mut scored = Vec::with_capacity(chunk.lines.len());
                    worker.score(
                        &chunk.lines,
                        &chunk.dropped,
                        chunk.rules.as_deref(),
                        chunk.vectors.as_deref_mut(),
                        &mut scored,
                    );
                    let _ = spent.send(chunk.lines);
                    let results = Results {
                        scored,
                        end: chunk.end,
                    };
                    if results_tx.send(results).is_err() {
                        break;
                    }
                }
            });
            to_workers.push(tx);
            from_workers.push(results_rx);
        }
        drop(spent_tx);
        let reader = scope.spawn(move || deal(lines, &to_workers, &spent_rx, encoding, allow));
        let end = take_in_turn(&from_workers, lane, &mut take);
        // The reader stops once the workers' channels close (returning
        // drops them); its context state goes back to the lane.
        drop(from_workers);
        // A panic on the reading thread (a bug) is the run's: taken as the
        // end of the stream, it made a replay exit 0 with its output cut
        // short.
        let (context, allow) = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (end, (context, allow))
    });
    let (context, allow) = context;
    if let Some(context) = context {
        lane.resume_context(context);
    }
    lane.resume_allowlist(allow);
    end
}

/// The workers' results in the order the chunks were dealt, handed to
/// `take`.
fn take_in_turn<E>(
    from_workers: &[Receiver<Results>],
    lane: &mut Lane,
    take: &mut impl FnMut(&mut Lane, Scored) -> Result<bool, E>,
) -> Result<End, E> {
    // Results in the order the chunks were dealt. A worker's channel
    // closes once the reader is done and it has sent all its results,
    // so the first closed one in turn is the end of the stream.
    for turn in (0..from_workers.len()).cycle() {
        let Ok(results) = from_workers[turn].recv() else {
            break;
        };
        for scored in results.scored {
            if !take(lane, scored)? {
                return Ok(End::Stopped);
            }
        }
        if let Some(why) = results.end {
            return Ok(End::Failed(why));
        }
    }
    // Returning drops the receivers: workers still sending stop, and so
    // does the reader after them.
    Ok(End::Done)
}

/// What the reading thread hands back when it ends: the context state and
/// the allowlist it took from the lane.
type Handed = (Option<ContextState>, Option<Allowlist>);

/// The reading thread: chunks of lines dealt to the workers in turn; a
/// fatal error ends the last chunk. With `allow`, its rules decide here,
/// in order, which records are dropped (they are not encoded), and the
/// rules go with each chunk. With `encoding`, each kept record's context
/// features are encoded here, in order. Both are handed back.
fn deal(
    lines: impl Iterator<Item = Result<Record, ReadError>>,
    to_workers: &[SyncSender<Chunk>],
    spent: &Receiver<Lines>,
    mut encoding: Option<(Arc<Encoder>, ContextState)>,
    mut allow: Option<(LogKind, Allowlist)>,
) -> Handed {
    let mut fields = FieldCache::default();
    let mut turn = (0..to_workers.len()).cycle();
    let mut send = |chunk: Chunk| {
        while let Ok(lines) = spent.try_recv() {
            drop(lines);
        }
        let worker = turn.next().unwrap_or(0);
        to_workers[worker].send(chunk).is_ok()
    };
    let mut lines_in = Vec::with_capacity(CHUNK);
    let mut bytes_in = 0;
    let mut dropped = Vec::new();
    // The rules the lines being gathered were judged by: a chunk holds
    // lines judged by one version, so a reload closes the chunk.
    let mut rules = allow.as_ref().map(|(_, a)| Arc::clone(a.rules()));
    let handed = |encoding: Option<(Arc<Encoder>, ContextState)>,
                  allow: Option<(LogKind, Allowlist)>| {
        (encoding.map(|(_, c)| c), allow.map(|(_, a)| a))
    };
    for line in lines {
        let fatal = match &line {
            Err(e) if !e.is_skip() => Some(e.to_string()),
            _ => None,
        };
        if let Some(why) = fatal {
            let gathered = (lines_in, dropped, rules);
            send(make_chunk(gathered, Some(why), &mut encoding, &mut fields));
            return handed(encoding, allow);
        }
        if let Some((module, a)) = allow.as_mut() {
            a.check();
            let reloaded = rules.as_ref().is_some_and(|r| !Arc::ptr_eq(r, a.rules()));
            if reloaded && !lines_in.is_empty() {
                bytes_in = 0;
                let gathered = take_gathered(&mut lines_in, &mut dropped, &rules);
                if !send(make_chunk(gathered, None, &mut encoding, &mut fields)) {
                    return handed(encoding, allow);
                }
            }
            rules = Some(Arc::clone(a.rules()));
            let drop = line
                .as_ref()
                .is_ok_and(|r| a.before_scoring(*module, r) == Some(Action::Drop));
            dropped.push(drop);
        }
        bytes_in += line.as_ref().map_or(0, Record::heap_bytes);
        lines_in.push(line);
        if lines_in.len() == CHUNK || bytes_in >= CHUNK_BYTES {
            bytes_in = 0;
            let gathered = take_gathered(&mut lines_in, &mut dropped, &rules);
            if !send(make_chunk(gathered, None, &mut encoding, &mut fields)) {
                return handed(encoding, allow);
            }
        }
    }
    if !lines_in.is_empty() {
        send(make_chunk(
            (lines_in, dropped, rules),
            None,
            &mut encoding,
            &mut fields,
        ));
    }
    handed(encoding, allow)
}

/// What the reading thread gathered for one chunk: the lines, which of
/// them the allowlist dropped, and the rules that judged them.
type Gathered = (Lines, Vec<bool>, Option<Arc<Rules>>);

/// Takes what was gathered so far, leaving room for the next chunk.
fn take_gathered(
    lines: &mut Lines,
    dropped: &mut Vec<bool>,
    rules: &Option<Arc<Rules>>,
) -> Gathered {
    let lines = std::mem::replace(lines, Vec::with_capacity(CHUNK));
    (lines, std::mem::take(dropped), rules.clone())
}

/// A chunk for a worker of what was gathered: the lines, which of them the
/// allowlist dropped, and the rules they were judged by; the context
/// features of the records kept are encoded here, in order.
fn make_chunk(
    (lines, dropped, rules): Gathered,
    end: Option<String>,
    encoding: &mut Option<(Arc<Encoder>, ContextState)>,
    fields: &mut FieldCache,
) -> Chunk {
    let vectors = encoding.as_mut().map(|(encoder, context)| {
        let n = encoder.len();
        let mut block = Vec::with_capacity(lines.len() * n);
        for record in kept_records(&lines, &dropped) {
            let at = block.len();
            block.resize(at + n, 0.0);
            encoder.encode_context(record, fields, context, &mut block[at..]);
        }
        block
    });
    Chunk {
        lines,
        dropped,
        rules,
        vectors,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::lane::Output;
    use crate::pipeline::LaneOptions;
    use crate::score::ScoredRecord;

    /// Scores a stream of the example ssh records (several chunks; with
    /// malformed lines every `malformed_every`, a fatal error before record
    /// `fatal_at`, a stop after `stop_after` taken) under `rules`, through
    /// `Lane::line` one record at a time and through `score_parallel` on 1
    /// and 3 threads: the same records, flags, scores and counters, and the
    /// allowlist back in the lane.
    fn allowlisted_as_one_record_at_a_time(
        rules: &str,
        malformed_every: Option<usize>,
        fatal_at: Option<usize>,
        stop_after: Option<usize>,
    ) -> crate::pipeline::LaneStats {
        let dir = tempfile::tempdir().unwrap();
        let mut model = crate::model::tests::ssh_model().clone();
        // Every record an anomaly, so that `no_alert` has work.
        model.threshold.value = 0.0;
        model
            .save(
                &dir.path()
                    .join(crate::model::file_name(crate::LogKind::SSH)),
            )
            .unwrap();
        let allow = dir.path().join("allow.toml");
        std::fs::write(&allow, rules).unwrap();
        let opts = LaneOptions {
            allowlist: Some(allow),
            ..Default::default()
        };
        let records = crate::zeek::testutil::example_records("ssh");
        let stream = || -> Vec<Result<Record, ReadError>> {
            let mut lines = Vec::new();
            for (i, r) in records.iter().cycle().take(3 * CHUNK + 77).enumerate() {
                if fatal_at == Some(i) {
                    let reason = "not a log".to_owned();
                    lines.push(Err(ReadError::NotALog {
                        file: "x".into(),
                        reason,
                    }));
                }
                if malformed_every.is_some_and(|m| i % m == 0) {
                    let (file, line, reason) = ("x".into(), i as u64, "cut".to_owned());
                    lines.push(Err(ReadError::Malformed { file, line, reason }));
                }
                lines.push(Ok(r.clone()));
            }
            lines
        };
        let scored = |out: Vec<Output>| -> Vec<ScoredRecord> {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Scored(s) => Some(s),
                    Output::Observed(_) => None,
                })
                .collect()
        };
        let mut alone = Lane::load(crate::LogKind::SSH, dir.path(), &opts).unwrap();
        let mut want = Vec::new();
        for (taken, line) in stream().into_iter().enumerate() {
            if matches!(&line, Err(e) if !e.is_skip()) || stop_after == Some(taken) {
                break;
            }
            alone.line(line.map(crate::zeek::Parsed::Record), &mut want);
        }
        let want = scored(want);
        let stats = *alone.stats();
        assert!(want.iter().any(|s| s.anomaly), "some anomalies stay");
        for threads in [1, 3] {
            let mut lane = Lane::load(crate::LogKind::SSH, dir.path(), &opts).unwrap();
            let mut got = Vec::new();
            let mut taken = 0;
            score_parallel(stream().into_iter(), threads, &mut lane, |lane, s| {
                lane.take(s, &mut got);
                taken += 1;
                Ok::<_, ()>(stop_after != Some(taken))
            })
            .unwrap();
            assert_eq!(*lane.stats(), stats, "{threads} threads");
            assert!(
                scored(got) == want,
                "{threads} threads: not the one-record path's records"
            );
            assert!(
                lane.allowlist_path().is_some(),
                "the allowlist went back to the lane"
            );
        }
        // Live mode's batches (`Lane::lines`, a block at a time), of the
        // lines the one-record path took, in batches of several sizes.
        let taken = || {
            stream()
                .into_iter()
                .enumerate()
                .take_while(|(i, line)| {
                    !matches!(line, Err(e) if !e.is_skip()) && stop_after != Some(*i)
                })
                .map(|(_, line)| line.map(crate::zeek::Parsed::Record))
        };
        for batch in [1, 7, 64, 65, 1000] {
            let mut lane = Lane::load(crate::LogKind::SSH, dir.path(), &opts).unwrap();
            let mut got = Vec::new();
            let mut lines = taken().peekable();
            while lines.peek().is_some() {
                lane.lines(lines.by_ref().take(batch), &mut got);
            }
            assert_eq!(*lane.stats(), stats, "batches of {batch}");
            assert!(
                scored(got) == want,
                "batches of {batch}: not the one-record path's records"
            );
        }
        stats
    }

    /// A panic on the reading thread (here, in the lines' iterator) ends
    /// the run as a panic, not as the end of the stream.
    #[test]
    fn a_panic_while_reading_is_not_the_end_of_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::tests::ssh_model().clone();
        let path = dir
            .path()
            .join(crate::model::file_name(crate::LogKind::SSH));
        model.save(&path).unwrap();
        let records = crate::zeek::testutil::example_records("ssh");
        let mut lane =
            Lane::load(crate::LogKind::SSH, dir.path(), &LaneOptions::default()).unwrap();
        let mut next = records.iter().cycle().cloned().enumerate();
        let lines = std::iter::from_fn(move || match next.next() {
            Some((i, _)) if i == CHUNK + 7 => panic!("a reader's bug"),
            Some((_, r)) => Some(Ok(r)),
            None => None,
        });
        let mut taken = 0;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            score_parallel(lines, 2, &mut lane, |_, _| {
                taken += 1;
                Ok::<_, ()>(true)
            })
        }));
        assert!(
            run.is_err(),
            "ended as {:?} after {taken} lines",
            run.unwrap()
        );
    }

    /// An allowlist applied on the threads (drops on the reading thread,
    /// `no_alert` on the workers) writes what the one-record path writes.
    /// A drop by destination leaves records of the same source (the
    /// context's key) kept: a dropped record feeding the context would
    /// change their scores. Malformed lines keep the drops aligned.
    #[test]
    fn an_allowlist_on_threads_writes_what_one_record_at_a_time_writes() {
        let rules = "[[rule]]\nsource = \"10.128.0.19\"\naction = \"drop\"\n\n\
                     [[rule]]\ndestination = \"10.47.23.186\"\naction = \"drop\"\n\n\
                     [[rule]]\nsource = \"10.0.0.227\"\naction = \"no_alert\"\n";
        let stats = allowlisted_as_one_record_at_a_time(rules, Some(7), None, None);
        assert!(stats.dropped >= 10 && stats.unalerted >= 10, "{stats:?}");
        assert!(stats.malformed >= 10, "{stats:?}");
        // A fatal error in the middle of a chunk, and a stop.
        allowlisted_as_one_record_at_a_time(rules, Some(11), Some(700), None);
        allowlisted_as_one_record_at_a_time(rules, None, None, Some(600));
    }
}
