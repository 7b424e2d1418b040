//! Shared Key authorization for the Blob service (version 2009-09-19 and later).
//!
//! String-to-sign, as documented in "Authorize with Shared Key" (Azure Storage
//! REST reference) and as Azurite's `BlobSharedKeyAuthenticator` rebuilds it:
//!
//! ```text
//! VERB \n Content-Encoding \n Content-Language \n Content-Length \n Content-MD5 \n
//! Content-Type \n Date \n If-Modified-Since \n If-Match \n If-None-Match \n
//! If-Unmodified-Since \n Range \n
//! CanonicalizedHeaders        (every x-ms-* header: lowercase name, sorted, "name:value\n")
//! CanonicalizedResource       ("/" account path, then "\nname:value" per query parameter,
//!                              names lowercased and sorted, values comma-joined)
//! ```
//!
//! `Content-Length` is signed as the empty string when it is zero (2015-02-21+).
//! With the emulator's path-style URLs the path already starts with the account,
//! so the resource for `PUT /devstoreaccount1/c?restype=container` is
//! `/devstoreaccount1/devstoreaccount1/c\nrestype:container`.
//! The signature is `Base64(HMAC-SHA256(Base64Decode(key), UTF8(string-to-sign)))`
//! and the header is `Authorization: SharedKey <account>:<signature>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Standard headers that have a fixed slot in the string-to-sign, in order.
const SIGNED_STANDARD_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// Builds the Shared Key string-to-sign.
///
/// `path` is the URL path as sent (percent-encoded, starting with `/`);
/// `query` holds *decoded* query parameters.
pub fn string_to_sign(
    method: &str,
    account: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> String {
    let get = |name: &str| -> String {
        let value = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect::<Vec<_>>()
            .join(",");
        if name == "content-length" && value == "0" {
            String::new()
        } else {
            value
        }
    };
    let mut s = method.to_ascii_uppercase();
    s.push('\n');
    for name in SIGNED_STANDARD_HEADERS {
        s.push_str(&get(name));
        s.push('\n');
    }

    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-ms-"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, v) in ms {
        s.push_str(&n);
        s.push(':');
        s.push_str(&v);
        s.push('\n');
    }

    s.push('/');
    s.push_str(account);
    s.push_str(if path.is_empty() { "/" } else { path });
    let mut q: Vec<(String, Vec<&str>)> = Vec::new();
    for (k, v) in query {
        let k = k.to_ascii_lowercase();
        match q.iter_mut().find(|(qk, _)| *qk == k) {
            Some((_, vals)) => vals.push(v),
            None => q.push((k, vec![v])),
        }
    }
    q.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, mut vals) in q {
        vals.sort_unstable();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vals.join(","));
    }
    s
}

/// Signs a string-to-sign with a base64 account key.
pub fn sign(key_base64: &str, string_to_sign: &str) -> Result<String, String> {
    let key = STANDARD
        .decode(key_base64)
        .map_err(|e| format!("account key is not valid base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("bad HMAC key: {e}"))?;
    mac.update(string_to_sign.as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `Authorization` header value for a request.
pub fn authorization(
    account: &str,
    key_base64: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Result<String, String> {
    let sts = string_to_sign(method, account, path, query, headers);
    Ok(format!("SharedKey {account}:{}", sign(key_base64, &sts)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azurite::{DEV_ACCOUNT, DEV_ACCOUNT_KEY};

    #[test]
    fn string_to_sign_for_create_container() {
        let sts = string_to_sign(
            "put",
            DEV_ACCOUNT,
            "/devstoreaccount1/lake",
            &[("restype", "container")],
            &[
                ("Content-Length", "0"),
                ("x-ms-version", "2023-11-03"),
                ("x-ms-date", "Sun, 23 Nov 2025 12:00:00 GMT"),
                ("Host", "127.0.0.1:10000"),
            ],
        );
        assert_eq!(
            sts,
            "PUT\n\n\n\n\n\n\n\n\n\n\n\n\
             x-ms-date:Sun, 23 Nov 2025 12:00:00 GMT\nx-ms-version:2023-11-03\n\
             /devstoreaccount1/devstoreaccount1/lake\nrestype:container"
        );
    }

    #[test]
    fn signature_matches_independent_hmac() {
        // Expected value computed independently with Python:
        // base64(hmac.new(b64decode(KEY), b"hello\nworld", sha256).digest())
        let sig = sign(DEV_ACCOUNT_KEY, "hello\nworld").unwrap();
        assert_eq!(sig, "ST254um77q2sshBlZ4MRhMmJ69PxColm/Pudr2xlM/E=");
    }

    #[test]
    fn query_parameters_sorted_and_grouped() {
        let sts = string_to_sign(
            "GET",
            "acct",
            "/acct/c",
            &[
                ("restype", "container"),
                ("comp", "list"),
                ("Include", "b"),
                ("include", "a"),
            ],
            &[],
        );
        assert!(
            sts.ends_with("/acct/acct/c\ncomp:list\ninclude:a,b\nrestype:container"),
            "{sts}"
        );
    }

    #[test]
    fn bad_key_is_an_error() {
        assert!(sign("not base64!", "x").is_err());
    }
}
