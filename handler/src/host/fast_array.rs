//! A fast path for the Event Hub batch in the shape the host sends it: `Data.<binding>`
//! is a JSON string holding a JSON array of JSON strings
//! (`"[\"{\\\"a\\\":1}\",\"x\"]"`, see `shared/host-protocol.md`).
//!
//! Why: serde_json reads those bytes three times (skip the string in the envelope,
//! unescape it, parse the array and unescape each element), and with a quote in every
//! few bytes of a JSON body the wire text has an escape every ~8 bytes, so its per-escape
//! loop dominates the decode. Here one pass undoes both escape levels and yields the
//! bodies directly.
//!
//! The rule that keeps it safe: [`decode_string_wrapped_strings`] answers `None` for
//! anything it does not handle exactly as serde_json does (`\u` escapes, control
//! characters, whitespace between the elements, elements that are not strings, …), and
//! the caller then runs the serde path unchanged. Whenever it answers `Some`, the bodies
//! equal what `serde_json::from_str::<Vec<String>>` makes of the unescaped string, and
//! serde_json would have accepted the string token (the differential tests below).

/// Decodes the JSON string token at the start of `wire` (opening quote included) when
/// it holds a compact JSON array of strings. Returns the strings and the token's length
/// in bytes (closing quote included); what follows the token is not looked at.
pub(super) fn decode_string_wrapped_strings(wire: &[u8]) -> Option<(Vec<String>, usize)> {
    let mut r = Reader { wire, pos: 0 };
    r.expect_raw(b'"')?;
    r.expect_raw(b'[')?;
    let mut strings = Vec::new();
    if r.wire.get(r.pos) == Some(&b']') {
        r.pos += 1;
    } else {
        let mut scratch = Vec::new();
        loop {
            // An element opens with a quote, which the outer string escapes: `\"`.
            r.expect_raw(b'\\')?;
            r.expect_raw(b'"')?;
            scratch.clear();
            r.read_element(&mut scratch)?;
            // Every byte copied is a whole UTF-8 sequence of the (valid) input or an
            // ASCII escape result, so this holds; checked anyway, as it is cheap.
            strings.push(std::str::from_utf8(&scratch).ok()?.to_owned());
            match r.next_byte()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    r.expect_raw(b'"')?;
    Some((strings, r.pos))
}

/// The text of `token`, a whole JSON string token (quotes included, nothing around
/// it), when it has only one-letter escapes: one level of the host's wrapping, as in
/// every `...Array` metadata value. `None` for `\u` escapes, control characters and
/// anything malformed, which serde then decides; a `Some` is what serde makes of it.
pub(super) fn unescape_string_token(token: &str) -> Option<String> {
    let mut r = Reader {
        wire: token.as_bytes(),
        pos: 0,
    };
    r.expect_raw(b'"')?;
    let mut out = Vec::with_capacity(token.len());
    loop {
        r.copy_plain_run(&mut out);
        match r.next_byte()? {
            b'"' => break,
            b'\\' => out.push(simple_escape(r.next_byte()?)?),
            _ => return None,
        }
    }
    if r.pos != token.len() {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The wire bytes and how far they are read.
struct Reader<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.wire.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// The next wire byte, which must be `want` as is (not escaped).
    fn expect_raw(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    /// One character of the outer string, unescaped (level 1). `None` for the outer
    /// string's end, a control character (serde refuses both here) and `\u` escapes.
    fn next_outer_char(&mut self) -> Option<u8> {
        match self.next_byte()? {
            b'\\' => simple_escape(self.next_byte()?),
            b'"' => None,
            b if b < 0x20 => None,
            b => Some(b),
        }
    }

    /// Reads one element's text into `out`, after its opening `\"` up to and including
    /// its closing `\"`.
    #[inline]
    fn read_element(&mut self, out: &mut Vec<u8>) -> Option<()> {
        loop {
            self.copy_plain_run(out);
            // Here sits a quote, a backslash or a control character, or the input ends.
            match self.wire.get(self.pos..).unwrap_or_default() {
                // The element's own escaped quote (`\"` escaped again): by far the most
                // common escape in a JSON body, so matched whole.
                [b'\\', b'\\', b'\\', b'"', ..] => {
                    out.push(b'"');
                    self.pos += 4;
                }
                // `\"`: the element's closing quote.
                [b'\\', b'"', ..] => {
                    self.pos += 2;
                    return Some(());
                }
                // `\\`: the element's own escape (level 2); its letter is one character
                // of the outer string.
                [b'\\', b'\\', ..] => {
                    self.pos += 2;
                    out.push(simple_escape(self.next_outer_char()?)?);
                }
                [b'\\', b'/', ..] => {
                    out.push(b'/');
                    self.pos += 2;
                }
                // `\n`, `\t`, … put a control character inside the element, which serde
                // refuses; `\u` is left to serde. A bare quote ends the outer string
                // inside an element; a bare control character is refused by serde.
                _ => return None,
            }
        }
    }

    /// Copies the bytes up to the next quote, backslash or control character to `out`.
    /// Eight bytes at a time (SWAR, as serde_json's own `skip_to_escape`), in plain Rust
    /// so that it needs no target-cpu flags; each word is copied whole and the excess
    /// cut off, which is cheaper than a variable-length copy per run of ~8 bytes.
    // Always inlined: as a call it kept `pos` and the length in memory (a quarter of
    // the decode went to that loop).
    #[inline(always)]
    fn copy_plain_run(&mut self, out: &mut Vec<u8>) {
        let mut pos = self.pos;
        while let Some(chunk) = self.wire.get(pos..pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            out.extend_from_slice(&word);
            let flags = special_bytes(u64::from_le_bytes(word));
            if flags != 0 {
                let plain = flags.trailing_zeros() as usize / 8;
                out.truncate(out.len() - (8 - plain));
                self.pos = pos + plain;
                return;
            }
            pos += 8;
        }
        self.pos = pos;
        while let Some(&b) = self.wire.get(self.pos).filter(|&&b| !is_special(b)) {
            out.push(b);
            self.pos += 1;
        }
    }
}

/// What a one-letter JSON escape stands for; `None` for `\u` and invalid escapes.
fn simple_escape(letter: u8) -> Option<u8> {
    Some(match letter {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// The high bit of each byte of `word` that is special. Exact for the lowest special
/// byte (a borrow only runs upwards from a special byte), which is all that is used.
fn special_bytes(word: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (control | zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')))) & HIGH_BITS
}

fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde makes of the token: `Ok(strings)` when the token is a JSON string
    /// holding a JSON array of strings, else the error.
    fn serde_decode(token: &str) -> Result<Vec<String>, String> {
        let inner: String = serde_json::from_str(token).map_err(|e| e.to_string())?;
        serde_json::from_str(&inner).map_err(|e| e.to_string())
    }

    /// The host's wire form of `bodies`, as serde_json (and Newtonsoft) write it.
    fn wire(bodies: &[String]) -> String {
        serde_json::to_string(&serde_json::to_string(bodies).unwrap()).unwrap()
    }

    fn fast(token: &str) -> Option<Vec<String>> {
        let (strings, len) = decode_string_wrapped_strings(token.as_bytes())?;
        assert_eq!(len, token.len(), "the whole token is read: {token}");
        Some(strings)
    }

    #[test]
    fn decodes_the_hosts_batch_shape() {
        let bodies: Vec<String> = vec![
            r#"{"_id":{"_data":"82"},"note":"a \"quoted\" word\nand a \\ backslash / slash"}"#.into(),
            String::new(),
            "plain text with ünïcödé and tabs\tinside".into(),
            "[1,2]".into(),
        ];
        assert_eq!(fast(&wire(&bodies)), Some(bodies));
        assert_eq!(fast(r#""[]""#), Some(vec![]));
    }

    #[test]
    fn leaves_what_it_does_not_handle_to_serde() {
        for token in [
            r#""[\"\\u0041\"]""#, // \u inside an element
            r#""[\u0022a\"]""#,   // \u in the outer string
            r#""[ \"a\"]""#,      // whitespace
            r#""[\"a\",1]""#,     // not a string
            r#""[\"a\"""#,        // truncated
            "\"[\\\"a\n\\\"]\"",  // raw control character
            r#""[\"a\n\"]""#,     // control character inside an element
            r#""[\"a\"],""#,      // trailing text inside the string
            r#"["a"]"#,           // not string-wrapped
        ] {
            assert_eq!(fast(token), None, "{token}");
        }
    }

    #[test]
    fn the_end_of_the_token_is_reported() {
        let text = r#""[\"a\"]"},"Metadata":{}}"#;
        let (strings, len) = decode_string_wrapped_strings(text.as_bytes()).unwrap();
        assert_eq!(strings, vec!["a".to_string()]);
        assert_eq!(&text[len..], r#"},"Metadata":{}}"#);
    }

    /// Text with everything that needs escaping at either level, weighted towards it.
    pub(crate) fn body() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => "[a-z0-9 {}:,\\[\\]]{1,6}",
                2 => Just("\"".to_string()),
                2 => Just("\\".to_string()),
                1 => Just("/".to_string()),
                1 => "[\u{0}-\u{1f}\u{7f}]",
                1 => "[é€\u{2028}\u{10348}]",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Mutations of a valid token: cut it, drop, insert or replace a byte.
    pub(crate) fn mutated(token: String, what: u8, at: usize, byte: u8) -> String {
        let mut bytes = token.into_bytes();
        let at = at % (bytes.len() + 1);
        match what % 4 {
            0 => bytes.truncate(at),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, byte),
            _ if at < bytes.len() => bytes[at] = byte,
            _ => {}
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(crate) fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'"'),
            Just(b'\\'),
            Just(b'u'),
            Just(b'n'),
            Just(b','),
            Just(b']'),
            Just(b' '),
            Just(b'\n'),
            Just(0u8),
            any::<u8>().prop_filter("ASCII", u8::is_ascii),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn valid_batches_decode_as_serde_does(bodies in proptest::collection::vec(body(), 0..5)) {
            let token = wire(&bodies);
            let fast = fast(&token);
            prop_assert_eq!(serde_decode(&token), Ok(bodies.clone()));
            // The host never writes \u for these, so only control characters (which
            // serde_json writes as \u00XX) may send a batch to the serde path.
            if !bodies.iter().any(|b| b.bytes().any(|c| c < 0x20 && !b"\n\r\t\x08\x0c".contains(&c))) {
                prop_assert_eq!(fast, Some(bodies));
            } else if let Some(f) = fast {
                prop_assert_eq!(f, bodies);
            }
        }

        /// Some ⇒ serde reads the same token and makes the same strings of it; so
        /// wherever serde refuses, the fast path has answered None.
        #[test]
        fn damaged_batches_decode_as_serde_does_or_go_to_serde(
            bodies in proptest::collection::vec(body(), 0..4),
            what in any::<u8>(),
            at in any::<usize>(),
            byte in interesting_byte(),
            tail in "[\"},: a]{0,3}",
        ) {
            let text = format!("{}{tail}", mutated(wire(&bodies), what, at, byte));
            if let Some((strings, len)) = decode_string_wrapped_strings(text.as_bytes()) {
                let mut de = serde_json::Deserializer::from_str(&text);
                let token = <&serde_json::value::RawValue as serde::Deserialize>::deserialize(&mut de)
                    .map_err(|e| TestCaseError::fail(format!("serde refuses {text:?}: {e}")))?
                    .get();
                prop_assert_eq!(&text[..len], token);
                prop_assert_eq!(serde_decode(token), Ok(strings));
            }
        }

        #[test]
        fn string_tokens_unescape_as_serde_does(
            text in proptest::collection::vec(body(), 0..3).prop_map(|v| v.concat()),
            mutate in any::<bool>(),
            what in any::<u8>(),
            at in any::<usize>(),
            byte in interesting_byte(),
        ) {
            let token = serde_json::to_string(&text).unwrap();
            let token = if mutate { mutated(token, what, at, byte) } else { token };
            let serde = serde_json::from_str::<String>(&token).ok();
            let fast = unescape_string_token(&token);
            if fast.is_some() {
                prop_assert_eq!(&fast, &serde, "{}", token);
            }
            if !mutate && !text.bytes().any(|c| c < 0x20 && !b"\n\r\t\x08\x0c".contains(&c)) {
                prop_assert_eq!(fast, Some(text));
            }
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_string_wrapped_strings(&bytes);
            let _ = unescape_string_token(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn plain_runs_stop_at_the_first_special_byte(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff], 0..40), start in 0usize..8) {
            let start = start.min(bytes.len());
            let want = bytes[start..].iter().position(|&b| is_special(b)).unwrap_or(bytes.len() - start);
            let mut reader = Reader { wire: &bytes, pos: start };
            let mut out = b"x".to_vec();
            reader.copy_plain_run(&mut out);
            prop_assert_eq!(reader.pos, start + want);
            prop_assert_eq!(&out[1..], &bytes[start..start + want]);
        }
    }
}
