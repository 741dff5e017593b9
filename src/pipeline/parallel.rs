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

use super::lane::{Lane, LaneWorker, Scored};
use crate::features::{ContextState, Encoder, FieldCache};
use crate::zeek::{ReadError, Record};

/// Lines per chunk: large enough that a channel message per chunk costs
/// nothing next to scoring it, small enough that the first results come
/// soon and the chunks in flight (two queued per worker each way) stay a
/// few megabytes.
pub const CHUNK: usize = 512;

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
/// Only for a lane that [`Lane::scores_anywhere`]: the workers apply no
/// allowlist, so a lane with one is scored in order by the caller.
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
    debug_assert!(lane.scores_anywhere(), "an allowlist decides in order");
    let encoding = lane.take_encoding();
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
                    worker.score(&chunk.lines, chunk.vectors.as_deref_mut(), &mut scored);
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
        let reader = scope.spawn(move || deal(lines, &to_workers, &spent_rx, encoding));
        let end = take_in_turn(&from_workers, lane, &mut take);
        // The reader stops once the workers' channels close (returning
        // drops them); its context state goes back to the lane.
        drop(from_workers);
        let context = reader.join().ok().flatten();
        (end, context)
    });
    if let Some(context) = context {
        lane.resume_context(context);
    }
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

/// The reading thread: chunks of lines dealt to the workers in turn; a
/// fatal error ends the last chunk. With `encoding`, each record's feature
/// vector is made here, in order, and the context state handed back.
fn deal(
    lines: impl Iterator<Item = Result<Record, ReadError>>,
    to_workers: &[SyncSender<Chunk>],
    spent: &Receiver<Lines>,
    mut encoding: Option<(Arc<Encoder>, ContextState)>,
) -> Option<ContextState> {
    let mut fields = FieldCache::default();
    let mut turn = (0..to_workers.len()).cycle();
    let mut vectors = |lines: &Lines| -> Option<Vec<f64>> {
        let (encoder, context) = encoding.as_mut()?;
        let n = encoder.len();
        let records = lines.iter().filter(|l| l.is_ok()).count();
        let mut block = vec![0.0; records * n];
        for (record, v) in lines
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .zip(block.chunks_exact_mut(n.max(1)))
        {
            encoder.encode_context(record, &mut fields, context, v);
        }
        Some(block)
    };
    let mut send = |lines: Lines, end: Option<String>, vectors: Option<Vec<f64>>| {
        while let Ok(lines) = spent.try_recv() {
            drop(lines);
        }
        let worker = turn.next().unwrap_or(0);
        to_workers[worker]
            .send(Chunk {
                lines,
                vectors,
                end,
            })
            .is_ok()
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    for line in lines {
        match line {
            Err(e) if !e.is_skip() => {
                let v = vectors(&chunk);
                send(chunk, Some(e.to_string()), v);
                return encoding.map(|(_, c)| c);
            }
            line => chunk.push(line),
        }
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            let v = vectors(&full);
            if !send(full, None, v) {
                return encoding.map(|(_, c)| c);
            }
        }
    }
    if !chunk.is_empty() {
        let v = vectors(&chunk);
        send(chunk, None, v);
    }
    encoding.map(|(_, c)| c)
}
