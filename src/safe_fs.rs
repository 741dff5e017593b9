//! Opening files that somebody else may have put in our way.
//!
//! A log folder, a live file or a model path can name a FIFO, a device or a
//! socket, by mistake or on purpose. A plain `File::open` of a FIFO blocks
//! until a writer appears (no signal stops it), and `/dev/zero` reads
//! forever. Everything autozeekwatch reads goes through [`open_regular`]:
//! the open itself cannot block, and anything but a regular file is refused
//! before a byte is read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading if it is a regular file (symlinks followed);
/// a FIFO, device, socket or folder is an `InvalidInput` error that says
/// what it is. Never blocks.
pub fn open_regular(path: &Path) -> io::Result<File> {
    // O_NONBLOCK makes the open of a FIFO return at once; on a regular file
    // it has no effect on reads.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file ({}); only regular files are read",
            path.display(),
            describe(&kind)
        ),
    ))
}

/// Reads a whole regular file of at most `max` bytes; a larger one is an
/// `InvalidData` error (checked while reading too, in case it grows).
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than the {max} bytes allowed for it",
                path.display()
            ),
        )
    };
    if file.metadata()?.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// True if `path` is a regular file (symlinks followed), without opening it.
pub fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// What a file that is not a regular one is, for messages.
pub(crate) fn describe(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Makes a rename or removal in `dir` durable (the folder's entry reaches
/// the disk, not only the file's bytes). A folder this process cannot open
/// is left as it is: the change stands, only its survival of a power cut
/// is not ensured.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("conn.log");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("a FIFO"), "{err}");
        assert!(!is_regular(&fifo));
    }

    #[test]
    fn devices_and_folders_are_refused() {
        let err = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        assert!(open_regular(dir.path()).is_err());
    }

    #[test]
    fn reads_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_capped(&p, 10).unwrap(), b"0123456789");
        let err = read_capped(&p, 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(read_capped(Path::new("/dev/zero"), 1 << 20).is_err());
    }
}
