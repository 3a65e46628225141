//! Reading a file named by configuration (`sslrootcert`, the password file; a migration in
//! `pgsteady-migrate`): regular files only, size-capped.
//!
//! `sslrootcert=/dev/zero` read 3.6 GB in 7 s, and a FIFO there (or in the migrations
//! directory) blocked `check`, `wait`, `serve` and `migrate` forever.
//! The file is checked with `stat` (following symlinks, so a link to a device is refused too)
//! before it is opened, checked again on the open descriptor, and read through a cap. Opening
//! a path swapped for a FIFO between the two checks can still block: that needs a local
//! attacker racing the check, which the checks do not claim to stop.

use std::io::Read;
use std::path::Path;

/// Root certificates, client certificates and keys: a system CA bundle is ~200 KB.
pub(crate) const MAX_CERT_FILE: u64 = 4 << 20;
/// The password file.
pub(crate) const MAX_PASSFILE: u64 = 1 << 20;

/// Why a file was not read; `Display` says it without the path (callers name the file).
#[derive(Debug)]
pub enum ReadError {
    /// `stat` or `open` failed (missing, permission denied...).
    Io(std::io::Error),
    /// Not a regular file: a FIFO, device, socket or directory (or a symlink to one).
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge {
        /// The cap, in bytes.
        cap: u64,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
            ReadError::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            ReadError::TooLarge { cap } => write!(f, "is larger than the {cap}-byte limit"),
        }
    }
}

/// Reads `path` if it is a regular file of at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    check(&meta, cap)?;
    let mut file = std::fs::File::open(path).map_err(ReadError::Io)?;
    check(&file.metadata().map_err(ReadError::Io)?, cap)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(bytes)
}

fn check(meta: &std::fs::Metadata, cap: u64) -> Result<(), ReadError> {
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta)));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(())
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn refuses_fifos_devices_links_to_them_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2000]).unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"fine").unwrap();
        let started = std::time::Instant::now();
        let rows: [(&Path, &str); 5] = [
            (&fifo, "is a FIFO, not a regular file"),
            (&link, "is a device, not a regular file"),
            (Path::new("/dev/zero"), "is a device"),
            (dir.path(), "is a directory"),
            (&big, "larger than the 1000-byte limit"),
        ];
        for (path, want) in rows {
            let err = read_regular(path, 1000).unwrap_err();
            assert!(err.to_string().contains(want), "{path:?}: {err}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(read_regular(&ok, 1000).unwrap(), b"fine");
    }
}
