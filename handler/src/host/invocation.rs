//! The envelope of every invocation (`{"Data": {...}, "Metadata": {...}}`), the answer
//! to a successful one, and the error for a request the host should never have sent.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::fast_array;

/// A request the host should never have sent: answered 400 with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct RequestError(pub String);

impl RequestError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// The envelope of every invocation, with values left as raw JSON until a trigger
/// decoder asks for them.
#[derive(Debug, Deserialize)]
pub struct Invocation<'a> {
    #[serde(rename = "Data", alias = "data", borrow, default)]
    pub(super) data: HashMap<Cow<'a, str>, RawJson<'a>>,
    #[serde(rename = "Metadata", alias = "metadata", borrow, default)]
    metadata: HashMap<Cow<'a, str>, &'a RawValue>,
    /// The batch's bodies when the fast path decoded them while finding the end of
    /// `Data.<binding>` (see [`fast_array`]); taken once by the Event Hub decoder.
    #[serde(skip)]
    predecoded: Predecoded<'a>,
}

/// A `Data` value as the JSON text it was sent as (what serde_json's `RawValue` holds,
/// but also made by the fast path, which has validated the token itself).
#[derive(Debug, Clone, Copy)]
pub(super) struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    pub(super) fn get(&self) -> &'a str {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Self(raw.get()))
    }
}

/// Bodies decoded ahead by the fast path: the binding they belong to and the strings.
#[derive(Default)]
struct Predecoded<'a>(Cell<Option<(&'a str, Vec<String>)>>);

impl std::fmt::Debug for Predecoded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the bodies: a batch is megabytes.
        f.write_str("Predecoded")
    }
}

impl<'a> Invocation<'a> {
    /// Parses the request body; the error names what is wrong with it.
    pub fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(RequestError::new(
                "empty request body: expected {\"Data\":{...},\"Metadata\":{...}}",
            ));
        }
        let text =
            std::str::from_utf8(body).map_err(|e| RequestError::new(format!("request body is not UTF-8: {e}")))?;
        match Self::parse_batch_fast(text) {
            Some(invocation) => Ok(invocation),
            None => Self::parse_with_serde(text),
        }
    }

    /// The envelope read by serde_json: any shape the protocol allows.
    pub(super) fn parse_with_serde(text: &'a str) -> Result<Self, RequestError> {
        let invocation: Self = serde_json::from_str(text).map_err(|e| {
            RequestError::new(format!(
                "request body is not a custom-handler invocation ({e}); expected {{\"Data\":{{...}},\"Metadata\":{{...}}}}"
            ))
        })?;
        if invocation.data.is_empty() {
            return Err(RequestError::new(
                "request has no Data: expected Data.<binding name> holding the trigger payload",
            ));
        }
        Ok(invocation)
    }

    /// The Event Hub request as the host sends it, `{"Data":{"<binding>":"[\"…\",…]"},
    /// "Metadata":{…}}`, with the batch's string decoded in one pass ([`fast_array`])
    /// instead of serde's three. `None` for any other shape or anything unusual in it:
    /// the serde path then decides, so a `Some` is always what serde would have made.
    pub(super) fn parse_batch_fast(text: &'a str) -> Option<Self> {
        let rest = text.strip_prefix("{\"Data\":{\"")?;
        let (binding, rest) = rest.split_once('"')?;
        // serde unescapes keys and refuses control characters in them.
        if binding.bytes().any(|b| b == b'\\' || b < 0x20) {
            return None;
        }
        let rest = rest.strip_prefix(':')?;
        let (bodies, token_len) = fast_array::decode_string_wrapped_strings(rest.as_bytes())?;
        // The token ends with an ASCII quote, so `token_len` is a char boundary.
        let (token, rest) = rest.split_at_checked(token_len)?;
        let rest = rest.strip_prefix("},\"Metadata\":")?;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<HashMap<Cow<'a, str>, &'a RawValue>>();
        let metadata = stream.next()?.ok()?;
        let rest = rest.get(stream.byte_offset()..)?.strip_prefix('}')?;
        if !rest.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            return None;
        }
        Some(Self {
            data: HashMap::from([(Cow::Borrowed(binding), RawJson(token))]),
            metadata,
            predecoded: Predecoded(Cell::new(Some((binding, bodies)))),
        })
    }

    /// The bodies of `binding` if the fast path decoded them; `None` on a second call.
    pub(super) fn take_predecoded(&self, binding: &str) -> Option<Vec<String>> {
        match self.predecoded.0.take() {
            Some((name, bodies)) if name == binding => Some(bodies),
            other => {
                self.predecoded.0.set(other);
                None
            }
        }
    }

    /// A metadata entry, case-insensitively (Newtonsoft-style), ignoring JSON null.
    fn meta(&self, key: &str) -> Option<&'a RawValue> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
            .filter(|v| v.get() != "null")
    }

    /// A metadata value that is an object or an array, sent either as itself or as a
    /// JSON string holding it (the host's `JsonConvert.SerializeObject` wrapping).
    pub(super) fn meta_value<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RequestError> {
        self.meta(key)
            .map(|raw| unwrap_json::<T>(raw.get()).map_err(|e| RequestError::new(format!("Metadata.{key}: {e}"))))
            .transpose()
    }

    /// `sys.MethodName`: the function the host thinks it is invoking.
    pub fn method_name(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Sys {
            #[serde(rename = "MethodName")]
            method_name: Option<String>,
        }
        self.meta_value::<Sys>("sys").ok().flatten().and_then(|s| s.method_name)
    }
}

/// Decodes `raw` as `T`, first unwrapping one level of JSON-in-a-string if needed.
pub(super) fn unwrap_json<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.starts_with('"') {
        let inner = match fast_array::unescape_string_token(text) {
            Some(inner) => inner,
            None => serde_json::from_str::<String>(text).map_err(|e| e.to_string())?,
        };
        serde_json::from_str(&inner).map_err(|e| format!("string-wrapped JSON does not decode: {e}"))
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// The body we answer a successful invocation with. The host needs a JSON object:
/// an empty body or `null` leaves the invocation hanging until `functionTimeout`.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<serde_json::Value>,
}

impl InvocationResponse {
    pub fn with_logs(logs: Vec<String>) -> Self {
        Self {
            logs,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_json_and_empty_bodies_name_the_problem() {
        assert!(Invocation::parse(b"").unwrap_err().0.contains("empty request body"));
        assert!(Invocation::parse(b"{not json")
            .unwrap_err()
            .0
            .contains("not a custom-handler invocation"));
        assert!(Invocation::parse(b"[1,2]")
            .unwrap_err()
            .0
            .contains("not a custom-handler invocation"));
        assert!(Invocation::parse(b"{\"Metadata\":{}}")
            .unwrap_err()
            .0
            .contains("no Data"));
        assert!(Invocation::parse(&[0xff, 0xfe]).unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn response_is_the_object_the_host_expects() {
        let text = serde_json::to_string(&InvocationResponse::with_logs(vec!["ok".into()])).unwrap();
        assert_eq!(text, r#"{"Outputs":{},"Logs":["ok"],"ReturnValue":null}"#);
    }
}
