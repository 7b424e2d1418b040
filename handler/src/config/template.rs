//! The object path template (`HUB2LAKE_PATH_TEMPLATE`): its tokens and the rules a
//! template must meet. Filling it in for an object is the lake's job
//! ([`crate::lake::layout::render`]).

/// A token of the path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Database,
    Collection,
    Operation,
    EventHub,
    Partition,
    Year,
    Month,
    Day,
    Hour,
    FirstSeq,
    LastSeq,
}

impl Token {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "database" => Self::Database,
            "collection" => Self::Collection,
            "operation" => Self::Operation,
            "eventhub" => Self::EventHub,
            "partition" => Self::Partition,
            "yyyy" => Self::Year,
            "mm" => Self::Month,
            "dd" => Self::Day,
            "hh" => Self::Hour,
            "first_seq" => Self::FirstSeq,
            "last_seq" => Self::LastSeq,
            _ => return None,
        })
    }
}

/// A part of a template: text kept as written, or a token filled in per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Token(Token),
}

/// A validated object path template such as the default
/// `{database}/{collection}/{yyyy}/{mm}/{dd}/{hh}/{partition}-{first_seq}-{last_seq}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    pieces: Vec<Piece>,
}

impl PathTemplate {
    /// Parses and validates a template; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' at {:?}", &rest[open..]))?;
            let name = &rest[open + 1..open + close];
            let token = Token::parse(name).ok_or_else(|| {
                format!(
                    "unknown token {{{name}}}; known: {{database}} {{collection}} {{operation}} {{eventhub}} \
                     {{partition}} {{yyyy}} {{mm}} {{dd}} {{hh}} {{first_seq}} {{last_seq}}"
                )
            })?;
            pieces.push(Piece::Token(token));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        for piece in &pieces {
            if let Piece::Literal(text) = piece {
                if text.contains('}') {
                    return Err("stray '}'".into());
                }
                if text.chars().any(|c| c.is_control() || c == '\\') {
                    return Err("literal parts may not hold control characters or '\\'".into());
                }
            }
        }
        if raw.starts_with('/') || raw.ends_with('/') {
            return Err("must not start or end with '/'".into());
        }
        for segment in raw.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!("path segment {segment:?} is not allowed"));
            }
            if segment.starts_with('_') {
                return Err(format!(
                    "segment {segment:?} starts with '_', which is reserved for _receipts, _deadletter and manifests"
                ));
            }
        }
        for required in [Token::Partition, Token::FirstSeq, Token::LastSeq] {
            if !pieces.contains(&Piece::Token(required)) {
                return Err(
                    "must contain {partition}, {first_seq} and {last_seq} so that object names are unique and \
                     deterministic per batch"
                        .into(),
                );
            }
        }
        let last_segment = raw.rsplit('/').next().unwrap_or_default();
        if !(last_segment.contains("{first_seq}") && last_segment.contains("{last_seq}")) {
            return Err("{first_seq} and {last_seq} must be in the file name (the last segment)".into());
        }
        Ok(Self {
            raw: raw.to_string(),
            pieces,
        })
    }

    /// Whether the template names `token`.
    pub fn uses(&self, token: Token) -> bool {
        self.pieces.contains(&Piece::Token(token))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The template's parts in order (the lake renders them; listings match them).
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_without_unique_names_are_refused() {
        for bad in [
            "{database}/{hh}",
            "{database}/{first_seq}-{last_seq}",
            "/{partition}-{first_seq}-{last_seq}",
            "../{partition}-{first_seq}-{last_seq}",
            "{first_seq}/{partition}-{last_seq}",
            "{nope}/{partition}-{first_seq}-{last_seq}",
            "_x/{partition}-{first_seq}-{last_seq}",
            "{database/{partition}-{first_seq}-{last_seq}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_default_template_names_the_route_hour_and_batch() {
        let t = PathTemplate::parse(crate::config::DEFAULT_TEMPLATE).unwrap();
        for token in [
            Token::Database,
            Token::Collection,
            Token::Hour,
            Token::Partition,
            Token::FirstSeq,
        ] {
            assert!(t.uses(token), "{token:?}");
        }
        assert!(!t.uses(Token::Operation));
        assert_eq!(t.pieces().first(), Some(&Piece::Token(Token::Database)));
    }
}
