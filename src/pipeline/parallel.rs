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

use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

use super::lane::{Lane, LaneWorker, Scored};
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
pub fn score_parallel<I, E>(
    lines: I,
    threads: usize,
    lane: &mut Lane,
    mut take: impl FnMut(&mut Lane, Scored) -> Result<bool, E>,
) -> Result<End, E>
where
    I: Iterator<Item = Result<Record, ReadError>> + Send,
{
    let workers: Vec<LaneWorker> = (0..threads.max(1)).map(|_| lane.worker()).collect();
    std::thread::scope(|scope| {
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
                for chunk in rx {
                    let mut scored = Vec::with_capacity(chunk.lines.len());
                    worker.score(&chunk.lines, &mut scored);
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
        scope.spawn(move || deal(lines, &to_workers, &spent_rx));
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
    })
}

/// The reading thread: chunks of lines dealt to the workers in turn; a
/// fatal error ends the last chunk.
fn deal(
    lines: impl Iterator<Item = Result<Record, ReadError>>,
    to_workers: &[SyncSender<Chunk>],
    spent: &Receiver<Lines>,
) {
    let mut turn = (0..to_workers.len()).cycle();
    let mut send = |chunk: Chunk| {
        while let Ok(lines) = spent.try_recv() {
            drop(lines);
        }
        let worker = turn.next().unwrap_or(0);
        to_workers[worker].send(chunk).is_ok()
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    for line in lines {
        match line {
            Err(e) if !e.is_skip() => {
                send(Chunk {
                    lines: chunk,
                    end: Some(e.to_string()),
                });
                return;
            }
            line => chunk.push(line),
        }
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if !send(Chunk {
                lines: full,
                end: None,
            }) {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        send(Chunk {
            lines: chunk,
            end: None,
        });
    }
}
