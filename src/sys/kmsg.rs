//! The kernel log, read as `/dev/kmsg` hands it out (Documentation/ABI/
//! testing/dev-kmsg): one record per `read`, non-blocking.
//!
//! What the device does, and what each outcome becomes here:
//! - a `read` returns exactly one record; a buffer smaller than the record
//!   gives `EINVAL`, so the buffer holds the largest record the kernel makes
//!   (`CONSOLE_EXT_LOG_MAX`, 8 KiB) and `EINVAL` means something else is at
//!   the path ([`KmsgError::Unusable`]);
//! - `EPIPE`: records were overwritten before they were read; the next read
//!   returns the oldest record kept ([`Next::Lost`]; the sequence numbers
//!   say how many);
//! - `EAGAIN` with `O_NONBLOCK`: nothing new ([`Next::End`]);
//! - `EPERM` even for root when `printk_devkmsg=off`, and without
//!   `CAP_SYSLOG` where `kernel.dmesg_restrict=1` (Debian's default):
//!   [`KmsgError::Denied`], at open or at the first read.
//!
//! The path is a flag so tests can hand in a regular file or a pipe of
//! records, one per line; such a source is split at newlines, and a partial
//! last line waits for its end.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest record the kernel writes to a `/dev/kmsg` reader
/// (`CONSOLE_EXT_LOG_MAX` in include/linux/printk.h).
pub const RECORD_MAX: usize = 8192;

/// Why the kernel log cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsgError {
    /// Not readable by this process; the text says what is missing.
    Denied(String),
    /// Nothing at the path.
    Missing(String),
    /// Something that does not behave like the kernel log, or another IO error.
    Unusable(String),
}

impl std::fmt::Display for KmsgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KmsgError::Denied(s) | KmsgError::Missing(s) | KmsgError::Unusable(s) => f.write_str(s),
        }
    }
}

/// One step of reading.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// One record, as the device returned it (header, message and the
    /// dictionary lines that follow).
    Record(&'a [u8]),
    /// Records were overwritten; reading goes on at the oldest one kept.
    Lost,
    /// A line of a non-device source longer than any record, dropped.
    Oversized,
    /// Nothing more for now.
    End,
}

/// An open kernel log.
#[derive(Debug)]
pub struct Kmsg {
    file: File,
    /// Whether the source is the character device (one record per read).
    device: bool,
    buf: Box<[u8]>,
    /// For a non-device source: bytes read and not yet handed out.
    pending: Vec<u8>,
    /// For a non-device source: where the record handed out last ends.
    consumed: usize,
    /// For a non-device source: inside a line too long to be a record.
    skipping: bool,
    path: String,
}

impl Kmsg {
    /// Opens the log at `path`, positioned at its oldest record.
    pub fn open(path: &Path) -> Result<Kmsg, KmsgError> {
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| error(&shown, &e))?;
        let device = file
            .metadata()
            .is_ok_and(|m| m.file_type().is_char_device());
        Ok(Kmsg {
            file,
            device,
            buf: vec![0; RECORD_MAX].into_boxed_slice(),
            pending: Vec::new(),
            consumed: 0,
            skipping: false,
            path: shown,
        })
    }

    /// The next record, or why there is none now.
    pub fn next(&mut self) -> Result<Next<'_>, KmsgError> {
        if self.device {
            return match self.file.read(&mut self.buf) {
                Ok(0) => Ok(Next::End),
                Ok(n) => Ok(Next::Record(&self.buf[..n])),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(Next::End),
                    Some(libc::EPIPE) => Ok(Next::Lost),
                    Some(libc::EINVAL) => Err(KmsgError::Unusable(format!(
                        "{}: a record larger than {RECORD_MAX} bytes, or not the kernel log",
                        self.path
                    ))),
                    _ => Err(error(&self.path, &e)),
                },
            };
        }
        self.next_line()
    }

    fn next_line(&mut self) -> Result<Next<'_>, KmsgError> {
        self.pending.drain(..self.consumed);
        self.consumed = 0;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                if self.skipping {
                    // The end of a line already reported as oversized.
                    self.skipping = false;
                    self.pending.drain(..=end);
                    continue;
                }
                self.consumed = end + 1;
                return Ok(Next::Record(&self.pending[..=end]));
            }
            if self.pending.len() > RECORD_MAX {
                // A line longer than any record: reported once, and the
                // rest of it dropped as it arrives.
                self.pending.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Next::Oversized);
                }
            }
            match self.file.read(&mut self.buf) {
                Ok(0) => return Ok(Next::End),
                Ok(n) => self.pending.extend_from_slice(&self.buf[..n]),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(Next::End),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error(&self.path, &e)),
            }
        }
    }
}

fn error(path: &str, e: &io::Error) -> KmsgError {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => KmsgError::Denied(format!(
            "{path}: {e} (the kernel log needs CAP_SYSLOG where kernel.dmesg_restrict=1, \
             and is closed to everyone with printk_devkmsg=off)"
        )),
        Some(libc::ENOENT) => KmsgError::Missing(format!("{path}: {e}")),
        _ => KmsgError::Unusable(format!("{path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::TestDir;
    use std::io::Write;

    fn drain(k: &mut Kmsg) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match k.next().expect("readable") {
                Next::Record(r) => out.push(String::from_utf8_lossy(r).into_owned()),
                Next::Lost => out.push("<lost>".into()),
                Next::Oversized => out.push("<oversized>".into()),
                Next::End => return out,
            }
        }
    }

    #[test]
    fn a_file_is_split_into_lines_and_a_partial_line_waits() {
        let dir = TestDir::new("kmsg-split");
        let path = dir.path().join("kmsg");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"6,1,5,-;one\n SUBSYSTEM=x\n6,2,6,-;tw")
            .expect("write");
        let mut k = Kmsg::open(&path).expect("open");
        assert!(!k.device);
        assert_eq!(drain(&mut k), ["6,1,5,-;one\n", " SUBSYSTEM=x\n"]);
        f.write_all(b"o\n").expect("write");
        assert_eq!(drain(&mut k), ["6,2,6,-;two\n"]);
        assert_eq!(drain(&mut k), Vec::<String>::new());
    }

    #[test]
    fn an_endless_line_is_reported_once_and_reading_goes_on() {
        let dir = TestDir::new("kmsg-long");
        let path = dir.path().join("kmsg");
        let mut long = b"6,8,1,-;before\n".to_vec();
        long.extend(vec![b'x'; RECORD_MAX * 3]);
        long.extend_from_slice(b"\n6,9,1,-;after\n");
        std::fs::write(&path, &long).expect("write");
        let mut k = Kmsg::open(&path).expect("open");
        assert_eq!(
            drain(&mut k),
            ["6,8,1,-;before\n", "<oversized>", "6,9,1,-;after\n"]
        );
    }

    #[test]
    fn permission_errors_name_the_capability() {
        for errno in [libc::EPERM, libc::EACCES] {
            match error("/dev/kmsg", &io::Error::from_raw_os_error(errno)) {
                KmsgError::Denied(s) => assert!(s.contains("CAP_SYSLOG"), "{s}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            error("/dev/kmsg", &io::Error::from_raw_os_error(libc::EIO)),
            KmsgError::Unusable(_)
        ));
    }

    #[test]
    fn missing_and_not_a_log() {
        assert!(matches!(
            Kmsg::open(Path::new("/nonexistent/kmsg")),
            Err(KmsgError::Missing(_))
        ));
        // A directory opens but cannot be read.
        let dir = TestDir::new("kmsg-dir");
        let mut k = Kmsg::open(dir.path()).expect("a directory opens");
        assert!(matches!(k.next(), Err(KmsgError::Unusable(_))));
    }

    /// The real device: one record per read, and EAGAIN at the end.
    #[test]
    #[ignore = "needs root (CAP_SYSLOG): run scripts/test"]
    fn the_device_hands_out_whole_records() {
        let mut k = Kmsg::open(Path::new("/dev/kmsg")).expect("open /dev/kmsg");
        assert!(k.device);
        let mut n = 0;
        loop {
            match k.next() {
                Ok(Next::Record(r)) => {
                    let first = r.split(|&b| b == b'\n').next().expect("a line");
                    assert!(first.contains(&b';'), "{}", String::from_utf8_lossy(r));
                    n += 1;
                }
                Ok(Next::Lost | Next::Oversized) => {}
                Ok(Next::End) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(n > 0, "a booted kernel has logged something");
    }
}
