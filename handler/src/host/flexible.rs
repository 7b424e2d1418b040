//! Values the host sends as a JSON number or as a string (`5812` or `"5812"`).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value the host may send as a JSON number or as a string (`"5812"`).
#[derive(Debug, Clone)]
pub(super) struct Flexible<T>(pub(super) T);

/// What the value was. Read with a visitor rather than `#[serde(untagged)]`, which
/// buffers every value first (a third of the metadata decode went there); the results
/// and error messages are the untagged enum's (`tests` below keeps it as the oracle).
enum NumberOrString {
    N(i64),
    S(String),
    /// Neither: the untagged enum's error, raised by the caller (after the value), so
    /// serde_json reports it at the position the untagged enum's error had.
    NoMatch,
}

const NO_MATCH: &str = "data did not match any variant of untagged enum NumberOrString";

impl<'de> Deserialize<'de> for NumberOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrStringVisitor)
    }
}

struct NumberOrStringVisitor;

impl<'de> Visitor<'de> for NumberOrStringVisitor {
    type Value = NumberOrString;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number or a string")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(NumberOrString::N(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(NumberOrString::NoMatch, NumberOrString::N))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NumberOrString::NoMatch)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NumberOrString::NoMatch)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(NumberOrString::NoMatch)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(NumberOrString::S(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(NumberOrString::S(v))
    }
    // Arrays and objects are read to their end, as the untagged enum's buffering
    // does, so a syntax error inside them is reported the same way.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        AnyValueVisitor.visit_seq(seq).map(|_| NumberOrString::NoMatch)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        AnyValueVisitor.visit_map(map).map(|_| NumberOrString::NoMatch)
    }
}

/// Any JSON value, read the way serde's buffering reads it (`deserialize_any` all the
/// way down) and dropped.
struct AnyValue;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyValueVisitor)
    }
}

struct AnyValueVisitor;

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        while map.next_entry::<AnyValue, AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
}

impl<'de> Deserialize<'de> for Flexible<i64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::N(n) => Ok(Self(n)),
            NumberOrString::S(s) => s
                .trim()
                .parse()
                .map(Self)
                .map_err(|_| de::Error::custom(format!("{s:?} is not a whole number"))),
            NumberOrString::NoMatch => Err(de::Error::custom(NO_MATCH)),
        }
    }
}

impl<'de> Deserialize<'de> for Flexible<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::N(n) => Ok(Self(n.to_string())),
            NumberOrString::S(s) => Ok(Self(s)),
            NumberOrString::NoMatch => Err(de::Error::custom(NO_MATCH)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The implementation before the visitor: the oracle.
    mod untagged {
        use serde::Deserialize;

        #[derive(Debug, PartialEq)]
        pub struct Flexible<T>(pub T);

        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrString {
            N(i64),
            S(String),
        }

        impl<'de> Deserialize<'de> for Flexible<i64> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match NumberOrString::deserialize(d)? {
                    NumberOrString::N(n) => Ok(Self(n)),
                    NumberOrString::S(s) => s
                        .trim()
                        .parse()
                        .map(Self)
                        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number"))),
                }
            }
        }

        impl<'de> Deserialize<'de> for Flexible<String> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self(match NumberOrString::deserialize(d)? {
                    NumberOrString::N(n) => n.to_string(),
                    NumberOrString::S(s) => s,
                }))
            }
        }
    }

    /// Both implementations on the same text: the same values or the same message.
    fn same<New, Old, T>(text: &str, new: impl Fn(New) -> T, old: impl Fn(Old) -> T) -> Result<(), TestCaseError>
    where
        New: serde::de::DeserializeOwned,
        Old: serde::de::DeserializeOwned,
        T: PartialEq + std::fmt::Debug,
    {
        let new = serde_json::from_str::<New>(text).map(new).map_err(|e| e.to_string());
        let old = serde_json::from_str::<Old>(text).map(old).map_err(|e| e.to_string());
        prop_assert_eq!(new, old, "{}", text);
        Ok(())
    }

    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_string()),
            Just("1e999".to_string()),
            Just("-0".to_string()),
            Just("1.5".to_string()),
            Just("01".to_string()),
            "\"[ 0-9a-z\\\\-]{0,6}\"",
            Just("\" 42 \"".to_string()),
            Just("\"\\ud800\"".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just("nul".to_string()),
            Just("".to_string()),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}", v.join(", "))),
                proptest::collection::vec(inner, 0..3).prop_map(|v| format!(
                    "{{{}}}",
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| format!("\"k{i}\":{x}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn the_visitor_reads_as_the_untagged_enum_did(
            values in proptest::collection::vec(json_value(), 0..4),
            sep in prop_oneof![Just(","), Just(" , "), Just(",\n")],
            tail in prop_oneof![Just(""), Just(" "), Just("x"), Just(",")],
        ) {
            let text = format!("[{}]{tail}", values.join(sep));
            same::<Vec<Flexible<i64>>, Vec<untagged::Flexible<i64>>, _>(&text, |v| v.into_iter().map(|f| f.0).collect::<Vec<_>>(), |v| v.into_iter().map(|f| f.0).collect::<Vec<_>>())?;
            same::<Vec<Option<Flexible<String>>>, Vec<Option<untagged::Flexible<String>>>, _>(&text, |v| v.into_iter().map(|f| f.map(|f| f.0)).collect::<Vec<_>>(), |v| v.into_iter().map(|f| f.map(|f| f.0)).collect::<Vec<_>>())?;
            let object = format!("{{\"a\":{}}}", values.first().map_or("1", |v| v.as_str()));
            #[derive(serde::Deserialize)]
            struct New { #[allow(dead_code)] a: Option<Flexible<i64>> }
            #[derive(serde::Deserialize)]
            struct Old { #[allow(dead_code)] a: Option<untagged::Flexible<i64>> }
            same::<New, Old, _>(&object, |n| n.a.map(|f| f.0), |o| o.a.map(|f| f.0))?;
        }
    }
}
