//! Reading small text files under `--path.procfs` and `--path.sysfs`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default bound on one file read: sysfs attributes are a page at most, and
/// /proc/cpuinfo of a 512-thread host is about 2.5 MiB.
pub const DEFAULT_LIMIT: u64 = 8 << 20;

/// The roots every file read goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Where procfs is mounted (`--path.procfs`).
    pub procfs: PathBuf,
    /// Where sysfs is mounted (`--path.sysfs`).
    pub sysfs: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            procfs: PathBuf::from("/proc"),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

impl Roots {
    /// A path below the procfs root.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    /// A path below the sysfs root.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }
}

/// Why a file could not be used.
#[derive(Debug)]
pub enum FileErrorKind {
    /// The file does not exist.
    Missing,
    /// Any other IO error.
    Io(io::Error),
    /// The file is larger than the bound.
    TooLarge(u64),
    /// The file is not UTF-8 text or holds NUL bytes.
    NotText,
    /// The file is text, but not what it should hold.
    Garbage,
}

/// A file read that failed, with the path it concerned.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: FileErrorKind,
}

impl FileError {
    /// An error about `path`.
    pub fn new(path: &Path, kind: FileErrorKind) -> FileError {
        FileError {
            path: path.to_owned(),
            kind,
        }
    }

    /// An error opening or listing `path`: missing if it does not exist.
    fn opening(path: &Path, e: io::Error) -> FileError {
        let kind = if e.kind() == io::ErrorKind::NotFound {
            FileErrorKind::Missing
        } else {
            FileErrorKind::Io(e)
        };
        FileError::new(path, kind)
    }

    /// Whether the file simply does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self.kind, FileErrorKind::Missing)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            FileErrorKind::Missing => write!(f, "{p}: no such file"),
            FileErrorKind::Io(e) => write!(f, "{p}: {e}"),
            FileErrorKind::TooLarge(limit) => write!(f, "{p}: larger than {limit} bytes"),
            FileErrorKind::NotText => write!(f, "{p}: not a text file"),
            FileErrorKind::Garbage => write!(f, "{p}: unexpected content"),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads a whole text file, refusing more than `limit` bytes, invalid UTF-8 and
/// NUL bytes, so a hostile or corrupt file costs neither memory nor a panic.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    let file = open(path)?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, e))?;
    text(path, buf, limit)
}

/// Opens a file for reading. O_NONBLOCK: a FIFO planted in a root must not
/// hang the reader in open(2) or read(2); regular files and sysfs attributes
/// ignore the flag.
fn open(path: &Path) -> Result<File, FileError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileError::opening(path, e))
}

fn io_error(path: &Path, e: io::Error) -> FileError {
    FileError::new(path, FileErrorKind::Io(e))
}

/// Checks what was read: within the bound, no NUL bytes, UTF-8.
pub(crate) fn text(path: &Path, buf: Vec<u8>, limit: u64) -> Result<String, FileError> {
    let err = |kind| FileError::new(path, kind);
    if buf.len() as u64 > limit {
        return Err(err(FileErrorKind::TooLarge(limit)));
    }
    if buf.contains(&0) {
        return Err(err(FileErrorKind::NotText));
    }
    String::from_utf8(buf).map_err(|_| err(FileErrorKind::NotText))
}

/// The bound on one attribute.
const ATTR_LIMIT: u64 = 64 * 1024;

/// Sysfs attributes kept open and re-read with pread(2) at offset 0, which
/// makes kernfs generate the attribute afresh (fs/kernfs/file.c: a read from
/// offset 0 starts the seq_file over). It saves the path walk, open and
/// close of every read; only for a real sysfs, where a file at a path stays
/// the same file. A failed read forgets the file, so the next opens it anew.
#[derive(Debug, Default)]
pub struct HeldAttrs {
    /// A handful of attributes: a list, searched by path bytes, is cheaper
    /// than hashing the path on every read.
    files: Vec<(PathBuf, HeldFile)>,
    /// Reused between reads: the bound plus one byte, to see an overflow.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct HeldFile {
    file: File,
    /// The bytes of the last read and their text: while an attribute reads
    /// the same, the same text is handed out again, allocating nothing.
    last: Option<(Vec<u8>, Arc<str>)>,
}

impl HeldAttrs {
    /// Reads one attribute, trimmed, as [`read_attr`] does. While the
    /// attribute reads the same bytes, the same `Arc` is returned (callers
    /// may compare with `Arc::ptr_eq` to skip work on an unchanged value).
    pub fn read(&mut self, path: &Path) -> Result<Arc<str>, FileError> {
        let found = self
            .files
            .iter()
            .position(|(p, _)| p.as_os_str() == path.as_os_str());
        let index = if let Some(i) = found {
            i
        } else {
            let file = open(path)?;
            self.files
                .push((path.to_owned(), HeldFile { file, last: None }));
            self.files.len() - 1
        };
        let held = &mut self.files[index].1;
        self.buf.resize(ATTR_LIMIT as usize + 1, 0);
        let buf = &mut self.buf;
        // One read: kernfs fills the buffer until the attribute ends
        // (seq_read_iter), so a short read is the whole of it, and a full
        // one means the attribute is larger than the bound.
        let result = loop {
            match held.file.read_at(buf, 0) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(io_error(path, e)),
            }
        };
        let result = result.and_then(|len| {
            let bytes = &buf[..len];
            if let Some((raw, text)) = &held.last
                && raw.as_slice() == bytes
            {
                return Ok(Arc::clone(text));
            }
            let t: Arc<str> = Arc::from(text(path, bytes.to_vec(), ATTR_LIMIT)?.trim());
            held.last = Some((bytes.to_vec(), Arc::clone(&t)));
            Ok(t)
        });
        if result.is_err() {
            self.files.swap_remove(index);
        }
        result
    }
}

/// One version of a file: device, inode, size and modification time. A
/// file replaced by a rename (a rotated certificate, a Kubernetes secret's
/// symlink swap; the path is followed) gets another inode; one rewritten in
/// place another time or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

/// The version of the file at `path`, `None` when it cannot be stat'ed.
pub fn version(path: &Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// Reads a one-line sysfs attribute and trims it.
pub fn read_attr(path: &Path) -> Result<String, FileError> {
    read_text(path, ATTR_LIMIT).map(|s| s.trim().to_owned())
}

/// Names of the entries of a directory that start with `prefix`, sorted.
pub fn list_dir(dir: &Path, prefix: &str) -> Result<Vec<String>, FileError> {
    let rd = std::fs::read_dir(dir).map_err(|e| FileError::opening(dir, e))?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    // A directory with millions of entries is not sysfs: cap what we look at.
    names.truncate(4096);
    Ok(names)
}

/// A private directory for one test, removed on drop: when the test passes,
/// and when it panics.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestDir(PathBuf);

#[cfg(test)]
impl TestDir {
    /// A new, empty directory named after `tag`, this process and a counter.
    pub(crate) fn new(tag: &str) -> TestDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("clock-exporter-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `rel` under the directory, making its parents;
    /// returns the file's path.
    pub(crate) fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_attributes_are_generated_afresh_on_every_read() {
        // lo's packet counter changes with every datagram over loopback; a
        // held file re-read at offset 0 must show the new value.
        let path = Path::new("/sys/class/net/lo/statistics/tx_packets");
        let mut held = HeldAttrs::default();
        let before: u64 = held.read(path).expect("read").parse().expect("number");
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..5 {
            sock.send_to(b"x", sock.local_addr().expect("addr"))
                .expect("send");
        }
        let after: u64 = held
            .read(path)
            .expect("read again")
            .parse()
            .expect("number");
        assert!(after >= before + 5, "{before} -> {after}");
        assert_eq!(held.files.len(), 1, "one file, kept open");
        // A failing read forgets the file.
        let missing = held
            .read(Path::new("/sys/class/net/lo/nonexistent"))
            .expect_err("missing");
        assert!(missing.is_missing());
        assert_eq!(held.files.len(), 1);
    }

    #[test]
    fn held_attribute_hands_out_the_same_text_until_it_changes() {
        // A regular file stands in for an attribute: pread at 0 reads it anew.
        let dir = TestDir::new("fs");
        let p = dir.write("held", b"kvm-clock\n");
        let mut held = HeldAttrs::default();
        let first = held.read(&p).expect("read");
        let again = held.read(&p).expect("read again");
        assert_eq!(&*first, "kvm-clock");
        assert!(Arc::ptr_eq(&first, &again), "unchanged bytes, same text");
        std::fs::write(&p, b"tsc\n").expect("rewrite");
        let changed = held.read(&p).expect("read changed");
        assert_eq!(&*changed, "tsc");
        assert!(!Arc::ptr_eq(&first, &changed));
        // Garbage after good reads is refused and forgets the file and its text.
        std::fs::write(&p, b"t\0sc\n").expect("rewrite");
        assert!(matches!(
            held.read(&p).map_err(|e| e.kind),
            Err(FileErrorKind::NotText)
        ));
        assert!(held.files.is_empty());
        std::fs::write(&p, b"tsc\n").expect("rewrite");
        let reopened = held.read(&p).expect("reopened");
        assert_eq!(&*reopened, "tsc");
        assert!(
            !Arc::ptr_eq(&changed, &reopened),
            "nothing kept from before"
        );
        // Larger than the bound: refused, not truncated into a value.
        std::fs::write(&p, vec![b'a'; ATTR_LIMIT as usize + 10]).expect("rewrite");
        assert!(matches!(
            held.read(&p).map_err(|e| e.kind),
            Err(FileErrorKind::TooLarge(ATTR_LIMIT))
        ));
    }

    #[test]
    fn reads_text_and_trims_attributes() {
        let dir = TestDir::new("fs");
        let p = dir.write("attr", b"tsc\n");
        assert_eq!(read_attr(&p).expect("read"), "tsc");
    }

    #[test]
    fn refuses_oversized_binary_and_missing_files() {
        let dir = TestDir::new("fs");
        let big = dir.write("big", &vec![b'a'; 2000]);
        assert!(matches!(
            read_text(&big, 1000).map_err(|e| e.kind),
            Err(FileErrorKind::TooLarge(1000))
        ));
        assert_eq!(read_text(&big, 2000).expect("exact limit").len(), 2000);
        let bin = dir.write("bin", b"ts\0c\n");
        assert!(matches!(
            read_text(&bin, 100).map_err(|e| e.kind),
            Err(FileErrorKind::NotText)
        ));
        let latin = dir.write("latin", b"\xff\xfe");
        assert!(matches!(
            read_text(&latin, 100).map_err(|e| e.kind),
            Err(FileErrorKind::NotText)
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // No writer: reads as empty at once instead of blocking forever.
        assert_eq!(read_text(&fifo, 100).expect("fifo"), "");
        let missing = read_text(Path::new("/nonexistent/clock"), 100).expect_err("missing");
        assert!(missing.is_missing());
        assert_eq!(missing.to_string(), "/nonexistent/clock: no such file");
    }
}
