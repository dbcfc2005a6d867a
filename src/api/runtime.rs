//! The runtime file: how the CLI finds the agent running on a data directory. The agent
//! writes `api.json` (its address and pid) once it listens and removes it when it stops; a
//! file left by a killed agent is recognised by its pid no longer running.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const FILE: &str = "api.json";

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The process.
    pub pid: u32,
    /// Where its API listens (`127.0.0.1:8787`).
    pub address: String,
}

/// The file's path for `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

impl Runtime {
    /// Writes it (aside, then renamed: a reader never sees half of it).
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let written =
            std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path(data_dir)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The agent running on `data_dir`, if its file names a live process.
    pub fn find(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(path(data_dir)).ok()?;
        let runtime: Self = serde_json::from_slice(&bytes).ok()?;
        runtime.is_alive().then_some(runtime)
    }

    /// Whether its process still runs (and is not this one).
    fn is_alive(&self) -> bool {
        self.pid != std::process::id() && Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Removes the file if it is this process's.
pub fn remove(data_dir: &Path) {
    let ours = std::fs::read(path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice::<Runtime>(&b).ok())
        .is_some_and(|r| r.pid == std::process::id());
    if ours {
        let _ = std::fs::remove_file(path(data_dir));
    }
}
