//! Checksums of stored objects, and digests that keep long names distinct.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256, used for checksums and for names that must stay distinct.
pub fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
