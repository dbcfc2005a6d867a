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

    /// Whether its process still runs (and is not this one). A killed agent whose parent has
    /// not reaped it yet (a zombie, e.g. adopted by an init that reaps late) does not run.
    fn is_alive(&self) -> bool {
        self.pid != std::process::id() && process_runs(self.pid)
    }
}

/// Whether process `pid` exists and is not a zombie (`/proc/PID/stat`'s state after the
/// parenthesised command name).
fn process_runs(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_does_not_run_and_a_live_process_does() {
        assert!(process_runs(std::process::id()));
        // A child killed and not waited for is a zombie until it is reaped.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        child.kill().unwrap();
        let started = std::time::Instant::now();
        while process_runs(pid) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "a killed child still runs"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "a zombie until reaped"
        );
        child.wait().unwrap();
        assert!(!process_runs(pid));
    }
}
