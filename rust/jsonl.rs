//! Appending JSON Lines to a file that several processes may share.
//!
//! Each batch goes out on a file opened for appending, under an exclusive advisory lock (`flock`
//! on Unix, `LockFileEx` on Windows), so lines from different processes never interleave. A
//! forked child reopens the file: a descriptor shared with the parent would share its lock, and
//! the parent's lock state is meaningless in the child.
//!
//! Exactly once: a batch lands whole or not at all. A write that fails part way (a file-size
//! limit, a full disk) is taken back by truncating the file to its length before the batch
//! (read under the lock, so no other appender moved it), and the caller's retry appends the
//! whole batch again. Should even that truncation fail, the next batch starts on a new line, so
//! a torn line never fuses with a whole one.
//!
//! A file deleted or replaced under the writer (`rm spans.jsonl`, a rotated log, a directory
//! moved away) is noticed with one `stat` per batch (its device and inode against the open
//! file's) and reopened, its directory recreated when it can be.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::fork;

/// Which file a path names: (device, inode) on Unix; elsewhere nothing is compared.
type FileId = Option<(u64, u64)>;

#[cfg(unix)]
#[allow(clippy::unnecessary_wraps)] // the same signature as elsewhere, where it is None
fn file_id(metadata: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_id(_metadata: &std::fs::Metadata) -> FileId {
    None
}

/// The last byte of `file` (of length `len` > 0).
fn last_byte(file: &File, len: u64) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut byte, len - 1)?;
    #[cfg(windows)]
    std::os::windows::fs::FileExt::seek_read(file, &mut byte, len - 1)?;
    Ok(byte[0])
}

/// An open file and which file it is.
struct OpenFile {
    file: File,
    id: FileId,
}

/// The open file of one process (and its fork generation).
struct Opened {
    generation: u64,
    file: Mutex<Option<OpenFile>>,
}

pub struct JsonlFile {
    path: PathBuf,
    opened: ArcSwap<Opened>,
}

impl JsonlFile {
    pub fn new(path: impl Into<PathBuf>) -> JsonlFile {
        JsonlFile {
            path: path.into(),
            opened: ArcSwap::from_pointee(Opened {
                generation: fork::generation(),
                file: Mutex::new(None),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This process's state: a forked child starts afresh (an inherited mutex may be held by a
    /// thread that does not exist in the child).
    fn here(&self) -> Arc<Opened> {
        let generation = fork::generation();
        let opened = self.opened.load_full();
        if opened.generation == generation {
            return opened;
        }
        let fresh = Arc::new(Opened {
            generation,
            file: Mutex::new(None),
        });
        self.opened.store(Arc::clone(&fresh));
        std::mem::forget(opened); // never drop the parent's state in the child
        fresh
    }

    fn open(&self) -> io::Result<OpenFile> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Readable too: the last byte is read to tell a torn line (see `append_whole`).
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let id = file_id(&file.metadata()?);
        Ok(OpenFile { file, id })
    }

    /// Whether `path` still names the open file (one `stat`).
    fn still_at_path(&self, open: &OpenFile) -> bool {
        open.id.is_none()
            || std::fs::metadata(&self.path).is_ok_and(|metadata| file_id(&metadata) == open.id)
    }

    /// Appends `data` (whole lines) atomically with respect to other appenders: all of it, or
    /// (on an error) none of it.
    pub fn append(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let opened = self.here();
        let mut slot = opened.file.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|open| !self.still_at_path(open)) {
            *slot = None; // deleted or replaced: write to what the path names now
        }
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some(open) = slot.as_mut() else {
            return Err(io::Error::other("the file could not be opened"));
        };
        let file = &mut open.file;
        file.lock()?;
        let written = append_whole(file, data);
        let unlocked = file.unlock();
        written.and(unlocked)
    }

    /// Closes the file (the next append reopens it).
    pub fn close(&self) {
        let opened = self.here();
        let mut file = opened.file.lock().unwrap_or_else(PoisonError::into_inner);
        *file = None;
    }
}

/// Appends `data` to `file` (locked by the caller) whole, or takes back what part of it landed.
fn append_whole(file: &mut File, data: &[u8]) -> io::Result<()> {
    let start = file.metadata()?.len();
    // A line torn by an earlier failure that could not be undone: start a new line rather than
    // fuse the first record with it.
    let torn = start > 0 && last_byte(file, start)? != b'\n';
    let mut written = if torn { file.write_all(b"\n") } else { Ok(()) };
    if written.is_ok() {
        written = file.write_all(data);
    }
    let Err(error) = written else {
        return Ok(());
    };
    match file.set_len(start) {
        Ok(()) => Err(error),
        Err(undo) => Err(io::Error::new(
            error.kind(),
            format!("{error} (and the part written could not be taken back: {undo})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whole_batches_from_many_threads() {
        let dir = std::env::temp_dir().join(format!("jsonl-test-{}", std::process::id()));
        let path = dir.join("nested").join("spans.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let file = Arc::new(JsonlFile::new(&path));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let file = Arc::clone(&file);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let batch = format!("{{\"t\":{t},\"i\":{i}}}\n").repeat(50);
                        file.append(batch.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * 200 * 50);
        assert!(lines
            .iter()
            .all(|l| l.starts_with("{\"t\":") && l.ends_with('}')));
        file.close();
        file.append(b"{\"after\":\"close\"}\n").unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("{\"after\":\"close\"}\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_deleted_file_is_recreated_and_a_torn_line_not_continued() {
        let dir = std::env::temp_dir().join(format!("jsonl-reopen-{}", std::process::id()));
        let path = dir.join("spans.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let file = JsonlFile::new(&path);
        file.append(b"{\"a\":1}\n").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        file.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\":2}\n");
        // A torn last line (an earlier writer's failure): the next batch starts a new line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"tor")
            .unwrap();
        file.append(b"{\"c\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"b\":2}\n{\"tor\n{\"c\":3}\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
