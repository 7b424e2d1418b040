//! The position file that makes replay resumable: per source partition, the highest
//! sequence number sent, for one destination.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::OpsError;

/// The position file: per source partition, the highest sequence number sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub version: u32,
    pub destination: String,
    pub partitions: BTreeMap<String, i64>,
}

impl Position {
    /// Reads `path` (a missing file is a fresh start) and checks it is for `destination`.
    pub fn load(path: &Path, destination: &str) -> Result<Self, OpsError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: 1,
                    destination: destination.to_string(),
                    partitions: BTreeMap::new(),
                })
            }
            Err(e) => return Err(OpsError::io(path)(e)),
        };
        let p: Self = serde_json::from_slice(&bytes).map_err(|e| {
            OpsError::Usage(format!(
                "the position file {} does not parse ({e}); delete it to start over",
                path.display()
            ))
        })?;
        if p.destination != destination {
            return Err(OpsError::Usage(format!(
                "the position file {} is for {}, not {destination}; use another --position file or delete it",
                path.display(),
                p.destination
            )));
        }
        Ok(p)
    }

    /// Writes the file whole (temporary name, then rename).
    pub fn save(&self, path: &Path) -> Result<(), OpsError> {
        let tmp = super::super::merge::partial_name(path);
        let text = serde_json::to_vec_pretty(self).map_err(|e| OpsError::Internal(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(OpsError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(OpsError::io(path))
    }

    pub(super) fn sent(&self, partition: &str, seq: i64) -> bool {
        self.partitions.get(partition).is_some_and(|p| seq <= *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_files_belong_to_one_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pos.json");
        let mut p = Position::load(&path, "eventhub://a/b").unwrap();
        p.partitions.insert("0".into(), 99);
        p.save(&path).unwrap();
        assert_eq!(Position::load(&path, "eventhub://a/b").unwrap(), p);
        let e = Position::load(&path, "eventhub://a/c").unwrap_err();
        assert!(e.to_string().contains("eventhub://a/b"), "{e}");
        std::fs::write(&path, "{").unwrap();
        assert!(Position::load(&path, "eventhub://a/b").is_err());
    }
}
