//! A redb storage backend that reads a store file and keeps every write in memory, so that
//! redb may repair an unclean file or run its repairing integrity check without changing a
//! byte on disk and without a copy of the file.
//!
//! Invariants:
//! - the file is opened read-only; nothing here can write it;
//! - memory grows only with what redb writes (whole 4 KiB blocks it touched: a repair's
//!   allocator state and headers), never with the size of the file;
//! - locks are taken on the real file, each one shared: two read-only handles coexist, and a
//!   writer (a running agent) and this handle exclude each other, so the file cannot change
//!   under a check.

use redb::StorageBackend;
use redb::backends::FileBackend;
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Size of the copy-on-write blocks.
const BLOCK: u64 = 4096;

/// The overlay: the file underneath, and the blocks written over it.
#[derive(Debug)]
pub(crate) struct OverlayBackend {
    file: File,
    locks: FileBackend,
    state: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// Logical length (what redb sees).
    len: u64,
    /// Bytes of the file still visible below the overlay (a shrink hides the rest for good).
    visible: u64,
    /// Written blocks by block number.
    blocks: BTreeMap<u64, Box<[u8]>>,
}

impl OverlayBackend {
    /// Opens `path` read-only under an empty overlay.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let locks = FileBackend::new(File::open(path)?).map_err(std::io::Error::other)?;
        Ok(Self {
            file,
            locks,
            state: Mutex::new(Overlay {
                len,
                visible: len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads `out.len()` bytes of the file at `offset`, zeros beyond what is visible.
    fn read_base(&self, visible: u64, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        out.fill(0);
        if offset < visible {
            let n = (visible - offset).min(out.len() as u64) as usize;
            self.file.read_exact_at(&mut out[..n], offset)?;
        }
        Ok(())
    }
}

impl StorageBackend for OverlayBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let state = self.state();
        let end = offset + out.len() as u64;
        if end > state.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the store",
            ));
        }
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            let dst = &mut out[(at - offset) as usize..(at - offset) as usize + n];
            match state.blocks.get(&block) {
                Some(b) => dst.copy_from_slice(&b[within..within + n]),
                None => self.read_base(state.visible, at, dst)?,
            }
            at += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut state = self.state();
        if len < state.len {
            state.visible = state.visible.min(len);
            let first_gone = len.div_ceil(BLOCK);
            state.blocks.retain(|b, _| *b < first_gone);
            if let Some(last) = state.blocks.get_mut(&(len / BLOCK)) {
                last[(len % BLOCK) as usize..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut state = self.state();
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            if !state.blocks.contains_key(&block) {
                let mut fresh = vec![0u8; BLOCK as usize].into_boxed_slice();
                self.read_base(state.visible, block * BLOCK, &mut fresh)?;
                state.blocks.insert(block, fresh);
            }
            let b = state.blocks.get_mut(&block).expect("inserted above");
            let src = (at - offset) as usize;
            b[within..within + n].copy_from_slice(&data[src..src + n]);
            at += n as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.locks.close()
    }

    // Every lock is taken shared on the real file: this handle never writes it.
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.locks.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.locks.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.locks.lock_shared_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.locks.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.locks.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.locks.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let base: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &base).unwrap();
        let o = OverlayBackend::open(&path).unwrap();
        o.write(BLOCK - 2, &[9; 5]).unwrap();
        let mut got = vec![0; 10];
        o.read(BLOCK - 5, &mut got).unwrap();
        let mut want = base[(BLOCK - 5) as usize..(BLOCK + 5) as usize].to_vec();
        want[3..8].fill(9);
        assert_eq!(got, want);
        // Shrink then grow: the hidden tail reads as zeros.
        o.set_len(BLOCK + 10).unwrap();
        o.set_len(2 * BLOCK).unwrap();
        let mut tail = vec![1; 20];
        o.read(BLOCK + 5, &mut tail).unwrap();
        assert_eq!(
            &tail[..5],
            &base[(BLOCK + 5) as usize..(BLOCK + 10) as usize]
        );
        assert!(tail[5..].iter().all(|b| *b == 0));
        o.write(5 * BLOCK, b"end").unwrap();
        assert_eq!(o.len().unwrap(), 5 * BLOCK + 3);
        assert_eq!(std::fs::read(&path).unwrap(), base, "the file is untouched");
    }
}
