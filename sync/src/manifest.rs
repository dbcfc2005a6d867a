//! The manifest: one small object (`manifest.json` under the agent's prefix) that lists every
//! object the sink holds for the agent (checkpoints, cold segments) with its size and SHA-256,
//! so a restore or `sync verify` reads one object instead of listing the bucket.
//!
//! It is updated after each batch of object writes with a conditional write (read it with its
//! version, change it, write it only if nobody changed it since; on a conflict read again and
//! retry), so two writers (the agent and a restore, or two agents sharing a prefix by mistake)
//! never lose each other's entries. Backends that cannot do conditional updates (the local
//! directory, which has one writer: this process) overwrite. The manifest carries a format
//! version and a digest of its entries; a manifest whose digest does not match is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The manifest's path under the agent's prefix.
pub const MANIFEST_PATH: &str = "manifest.json";

/// The manifest format this code writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// One object the manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

impl ManifestEntry {
    /// The entry describing `content`.
    pub fn of(content: &[u8]) -> Self {
        Self {
            bytes: content.len() as u64,
            sha256: hex(&Sha256::digest(content)),
        }
    }
}

/// The manifest object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// Objects by path under the agent's prefix.
    pub objects: BTreeMap<String, ManifestEntry>,
    /// SHA-256 over the entries (see [`Manifest::entries_digest`]).
    pub digest: String,
}

/// A change to the manifest from one confirmed object write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestChange {
    /// An object was written.
    Put(String, ManifestEntry),
    /// An object was deleted.
    Delete(String),
}

impl Default for Manifest {
    fn default() -> Self {
        let mut m = Self {
            format: MANIFEST_FORMAT,
            objects: BTreeMap::new(),
            digest: String::new(),
        };
        m.digest = m.entries_digest();
        m
    }
}

/// Why a stored manifest cannot be used (the sink rebuilds it from the objects).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not the JSON of a manifest.
    #[error("manifest is not valid: {0}")]
    NotValid(#[source] serde_json::Error),
    /// Another format.
    #[error("manifest format {0} is not {MANIFEST_FORMAT}")]
    Format(u32),
    /// Changed since it was written.
    #[error("manifest digest does not match its entries")]
    Digest,
}

impl Manifest {
    /// Parses and checks a stored manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Self = serde_json::from_slice(bytes).map_err(ManifestError::NotValid)?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        if m.digest != m.entries_digest() {
            return Err(ManifestError::Digest);
        }
        Ok(m)
    }

    /// The bytes to store (the digest refreshed).
    pub fn encode(&mut self) -> Vec<u8> {
        self.digest = self.entries_digest();
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// Applies changes in order.
    pub fn apply(&mut self, changes: &[ManifestChange]) {
        for c in changes {
            match c {
                ManifestChange::Put(path, entry) => {
                    self.objects.insert(path.clone(), entry.clone());
                }
                ManifestChange::Delete(path) => {
                    self.objects.remove(path);
                }
            }
        }
    }

    /// SHA-256 over `path\tbytes\tsha256\n` of every entry in path order.
    pub fn entries_digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, e) in &self.objects {
            h.update(format!("{path}\t{}\t{}\n", e.bytes, e.sha256));
        }
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let mut m = Manifest::default();
        m.apply(&[
            ManifestChange::Put("segments/a.seg".into(), ManifestEntry::of(b"alpha")),
            ManifestChange::Put("checkpoints/1.ckpt".into(), ManifestEntry::of(b"one")),
            ManifestChange::Delete("segments/a.seg".into()),
        ]);
        let bytes = m.encode();
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back.objects.len(), 1);
        assert_eq!(back.objects["checkpoints/1.ckpt"].bytes, 3);
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"bytes\": 3", "\"bytes\": 4");
        assert!(matches!(
            Manifest::decode(tampered.as_bytes()),
            Err(ManifestError::Digest)
        ));
        assert!(matches!(
            Manifest::decode(b"{}"),
            Err(ManifestError::NotValid(_))
        ));
    }
}
