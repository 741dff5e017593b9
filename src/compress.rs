//! The compressions a rotated Zeek log may be archived with, told by a
//! file's first bytes, never its name. ZeekControl (`CompressCmd`) and
//! zeek-archiver (`--compress`) gzip by default and can be set to bzip2 or
//! zstd; every reader of log files (training, replay, the follower, the
//! evaluation's labels, the file router) opens them through here, so they
//! all read the same archives.
//!
//! An archive cut short (still being written) fails with
//! [`io::ErrorKind::UnexpectedEof`] whatever its compression: the follower
//! tries such a file again later rather than giving up the rest of it.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

/// How many first bytes tell every compression apart.
pub const MAGIC_BYTES: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Zstd => "zstd",
        })
    }
}

/// The compressions that are recognised but not read, by their magic
/// bytes: such a file is refused by name rather than read as garbage lines.
const UNREAD: [(&[u8], &str); 3] = [
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
    (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    (b"PK\x03\x04", "zip"),
];

impl Compression {
    /// The compression `head` (a file's first bytes: [`MAGIC_BYTES`] of
    /// them, or all of a shorter file) starts with; `None` for plain text.
    /// A known compression this crate does not read is an error that names
    /// it; a file that ends within an archive's first bytes (one just begun)
    /// is an unexpected end, as an archive cut short is.
    pub fn of(head: &[u8]) -> io::Result<Option<Compression>> {
        let found = match head {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some(Compression::Bzip2),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            // A skippable frame first, as pzstd writes.
            [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Some(Compression::Zstd),
            _ => None,
        };
        let begun = |magic: &[u8]| magic.len() > head.len() && magic.starts_with(head);
        if found.is_none()
            && head.len() < MAGIC_BYTES
            && !head.is_empty()
            // (bzip2's fourth byte is its block size, 1 to 9)
            && [&[0x1f, 0x8b][..], b"BZh9", &[0x28, 0xb5, 0x2f, 0xfd]]
                .into_iter()
                .any(begun)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ends within the first bytes of an archive (one still being written?)",
            ));
        }
        if found.is_none() {
            if let Some((_, name)) = UNREAD.iter().find(|(magic, _)| head.starts_with(magic)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "compressed with {name}, which is not read (gzip, bzip2 and zstd are): decompress it, or archive with one of those"
                    ),
                ));
            }
        }
        Ok(found)
    }

    /// File name endings of the archives read, after `.log` or `.json`.
    pub const EXTENSIONS: [&'static str; 3] = ["gz", "bz2", "zst"];

    /// The decompressed content of `input`, every stream or frame in turn
    /// (`cat a.gz b.gz` is one archive). Memory is bounded: gzip and bzip2
    /// by their formats (32 KiB and 900 KB blocks), zstd by the decoder's
    /// default window limit (128 MiB, which `zstd --long` reaches; the
    /// default levels use 8 MiB at most).
    pub fn decoder<R: BufRead + Send + 'static>(
        self,
        input: R,
    ) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
            Compression::Zstd => Box::new(ZstdDecoder(zstd::stream::read::Decoder::with_buffer(
                input,
            )?)),
        })
    }
}

/// libzstd's name for a frame whose window is over the decoder's limit
/// (`ZSTD_error_frameParameter_windowTooLarge`), the text of the error the
/// `zstd` crate returns for it.
const WINDOW_TOO_LARGE: &str = "Frame requires too much memory for decoding";

/// The zstd decoder, with its one refusal that is no damage said as what
/// it is: an archive made with `zstd --long=28` or more (a window over
/// 128 MiB) read as "damaged after line 0", and the user recompressed
/// nothing.
struct ZstdDecoder<R: BufRead>(zstd::stream::read::Decoder<'static, R>);

impl<R: BufRead> Read for ZstdDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.to_string() == WINDOW_TOO_LARGE {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "compressed with a zstd window over 128 MiB (`zstd --long=28` or more), which is not read, to keep memory bounded: recompress it without `--long` (`zstd -dc --long=31 F | zstd -o G`)",
                )
            } else {
                e
            }
        })
    }
}

/// `input`'s content, decompressed if its first bytes say it is compressed,
/// and which compression that was.
pub fn decompressed<R: Read + Send + 'static>(
    input: R,
) -> io::Result<(Option<Compression>, Box<dyn BufRead + Send>)> {
    let mut raw = BufReader::with_capacity(1 << 16, input);
    let first = raw.fill_buf()?;
    if first.len() >= MAGIC_BYTES || first.is_empty() {
        // The first read holds the magic (a file's always does, unless the
        // file is shorter): the buffer is read on as it is.
        let found = Compression::of(first)?;
        return wrap(found, raw);
    }
    // A short first read: the rest of the magic from the reads after it.
    let mut head = first.to_vec();
    raw.consume(head.len());
    let n = head.len();
    head.resize(MAGIC_BYTES, 0);
    let n = n + read_up_to(&mut raw, &mut head[n..])?;
    head.truncate(n);
    let found = Compression::of(&head)?;
    wrap(found, BufReader::new(io::Cursor::new(head).chain(raw)))
}

fn wrap<R: BufRead + Send + 'static>(
    found: Option<Compression>,
    raw: R,
) -> io::Result<(Option<Compression>, Box<dyn BufRead + Send>)> {
    Ok(match found {
        None => (None, Box::new(raw)),
        Some(c) => (
            Some(c),
            Box::new(BufReader::with_capacity(1 << 16, c.decoder(raw)?)),
        ),
    })
}

/// Reads until `buf` is full or the input ends; the bytes read. An
/// archive cut short after some bytes (a decoder's unexpected end) ends the
/// read like the end of input: what decoded is what there is so far.
pub fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if n > 0 && e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"#separator \\x09\n1.0\tC1\n2.0\tC2\n";

    fn compress(c: Compression, bytes: &[u8]) -> Vec<u8> {
        match c {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(bytes, 1).unwrap(),
        }
    }

    /// A `zstd --long=30` archive (a window over the decoder's 128 MiB) is
    /// refused as unsupported, saying how to recompress it, not as damage.
    #[test]
    fn a_zstd_window_over_the_limit_is_said_as_such() {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(30).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(TEXT).unwrap();
        let bytes = e.finish().unwrap();
        let err = read_all(bytes).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
        assert!(
            err.to_string().contains("`zstd --long=28` or more"),
            "{err}"
        );
        // Within the limit, read as ever.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(TEXT).unwrap();
        assert_eq!(read_all(e.finish().unwrap()).unwrap().1, TEXT);
    }

    /// Reads one byte a call, as a pipe may.
    struct ByteAtATime(io::Cursor<Vec<u8>>);

    impl Read for ByteAtATime {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    fn read_from(input: impl Read + Send + 'static) -> io::Result<(Option<Compression>, Vec<u8>)> {
        let (c, mut r) = decompressed(input)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok((c, out))
    }

    /// `bytes` read whole, and a byte a read: the two must agree.
    fn read_all(bytes: Vec<u8>) -> io::Result<(Option<Compression>, Vec<u8>)> {
        let whole = read_from(io::Cursor::new(bytes.clone()));
        let trickled = read_from(ByteAtATime(io::Cursor::new(bytes)));
        match (&whole, &trickled) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
            _ => panic!("whole {whole:?}, a byte a read {trickled:?}"),
        }
        whole
    }

    const ALL: [Compression; 3] = [Compression::Gzip, Compression::Bzip2, Compression::Zstd];

    /// Two archives one after the other (`cat a b`, or an archiver that
    /// appends) read as one text, in every compression.
    #[test]
    fn every_compression_reads_back_every_stream() {
        for c in ALL {
            let mut both = compress(c, TEXT);
            both.extend(compress(c, b"3.0\tC3\n"));
            let (found, text) = read_all(both).unwrap();
            assert_eq!(found, Some(c));
            assert_eq!(text, [TEXT, b"3.0\tC3\n"].concat(), "{c}");
        }
    }

    /// Every cut of an archive, down to one byte, is an unexpected end, never
    /// plain text (a review found the first bytes of a bzip2 or zstd archive
    /// just begun read as a garbage line, and the file finished).
    #[test]
    fn every_cut_of_an_archive_is_an_unexpected_end() {
        for c in ALL {
            let whole = compress(c, TEXT);
            for cut in 1..whole.len() {
                let e = read_all(whole[..cut].to_vec()).unwrap_err();
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof,
                    "{c} cut at {cut}: {e}"
                );
            }
        }
    }

    /// pzstd starts its archives with a skippable frame (its block sizes).
    #[test]
    fn a_zstd_archive_may_start_with_a_skippable_frame() {
        let mut archive = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        archive.extend(compress(Compression::Zstd, TEXT));
        assert_eq!(
            read_all(archive).unwrap(),
            (Some(Compression::Zstd), TEXT.to_vec())
        );
    }

    #[test]
    fn plain_text_of_any_length_is_read_as_it_is() {
        for text in [&b""[..], b"a", b"ab\n", b"#sep", TEXT] {
            assert_eq!(read_all(text.to_vec()).unwrap(), (None, text.to_vec()));
        }
    }

    /// An archive cut short is what one still being written looks like:
    /// the follower tries it again later on `UnexpectedEof` only.
    #[test]
    fn an_archive_cut_short_is_an_unexpected_end_in_every_compression() {
        let long: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{i}\tC{i}\n").into_bytes())
            .collect();
        for c in ALL {
            let whole = compress(c, &long);
            let cut = whole[..whole.len() / 2].to_vec();
            let e = read_all(cut).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{c}: {e}");
        }
    }

    #[test]
    fn a_compression_not_read_is_named() {
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4].to_vec();
        let e = read_all(xz).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("compressed with xz"), "{e}");
    }
}
