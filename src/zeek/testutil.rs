//! Helpers for the reader's unit tests: hostile inputs made on the fly, a
//! guard against tests that would hang, and a per-thread count of heap
//! bytes, so "bounded memory" is checked rather than hoped for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// `len` bytes of `fill`, then `tail`: an input of any size that never
/// exists in memory (a huge line, a stream of zeros).
pub(crate) struct Repeat {
    fill: u8,
    left: u64,
    tail: io::Cursor<Vec<u8>>,
}

impl Repeat {
    pub(crate) fn new(fill: u8, len: u64, tail: &[u8]) -> Repeat {
        Repeat {
            fill,
            left: len,
            tail: io::Cursor::new(tail.to_vec()),
        }
    }
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return self.tail.read(buf);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].fill(self.fill);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `secs`: a regression that blocks (a FIFO opened for reading) then fails
/// instead of hanging the whole test run.
pub(crate) fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s: it blocks"))
}

/// Makes a FIFO at `path`.
pub(crate) fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

thread_local! {
    /// Heap bytes this thread allocated and has not freed (frees of memory
    /// from other threads make it drift, which the tests do not do).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// The system allocator, counting per thread. Installed for the library's
/// unit tests only.
struct Counting;

fn note(delta: isize) {
    // `try_with`: the allocator also runs while a thread's locals are torn
    // down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result and the most heap it held at once on
/// this thread, beyond what the thread held before.
pub(crate) fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get) - start;
    (out, usize::try_from(peak).unwrap_or(0))
}

/// A record of `fields` (name, value), in that column order.
pub(crate) fn record(fields: &[(&str, super::Value)]) -> super::Record {
    let schema = std::sync::Arc::new(super::Schema::new(
        fields.iter().map(|(n, _)| n.to_string()).collect(),
    ));
    super::Record::new(schema, fields.iter().map(|(_, v)| v.clone()).collect(), 1)
}

/// The records of one log type in the bundled example logs
/// (`examples/logs`), in order.
pub(crate) fn example_records(log: &str) -> Vec<super::Record> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs");
    let files = super::layout::discover(&examples, log, Default::default()).unwrap();
    super::Records::new(files.into_iter().map(|f| f.path).collect(), Some(log), true).collect()
}
