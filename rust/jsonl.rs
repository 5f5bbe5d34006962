//! Appending JSON Lines to a file that several processes may share.
//!
//! Each batch goes out in one `write` on a file opened for appending, under an exclusive
//! advisory lock (`flock` on Unix, `LockFileEx` on Windows), so lines from different processes
//! never interleave. A forked child reopens the file: a descriptor shared with the parent would
//! share its lock, and the parent's lock state is meaningless in the child.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::fork;

/// The open file of one process (and its fork generation).
struct Opened {
    generation: u64,
    file: Mutex<Option<File>>,
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

    /// Appends `data` (whole lines) atomically with respect to other appenders.
    pub fn append(&self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let opened = self.here();
        let mut file = opened.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            *file = Some(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&self.path)?,
            );
        }
        let Some(file) = file.as_mut() else {
            return Err(io::Error::other("the file could not be opened"));
        };
        file.lock()?;
        let written = file.write_all(data);
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
}
