//! A deliberately small HTTP/1.1 message reader/writer.
//!
//! Just enough of RFC 9112 for the fault proxy and the raw container-creation
//! client: a message head (start line + header fields), and the three body
//! framings (`Content-Length`, `Transfer-Encoding: chunked`, read-until-close).
//! Everything read from the network is treated as untrusted: sizes are bounded
//! and malformed input is an `io::Error`, never a panic.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upper bound for a message head (start line plus all header fields).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Upper bound for a request body the proxy buffers in memory.
pub(crate) const MAX_BUFFERED_BODY: u64 = 256 * 1024 * 1024;

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A parsed HTTP/1.x message head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The request line or status line, without CRLF.
    pub start_line: String,
    /// Header fields in order of appearance, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does any value of header `name` contain `token` (comma-separated, case-insensitive)?
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Serialises the head, including the blank line that ends it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(self.start_line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// For a request head: `(method, target)`.
    pub fn request_parts(&self) -> io::Result<(String, String)> {
        let mut it = self.start_line.split(' ');
        let method = it.next().filter(|m| !m.is_empty());
        let target = it.next().filter(|t| !t.is_empty());
        let version = it.next();
        match (method, target, version) {
            (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => Ok((m.to_string(), t.to_string())),
            _ => Err(invalid(format!("bad request line: {:?}", self.start_line))),
        }
    }

    /// For a response head: the status code.
    pub fn status(&self) -> io::Result<u16> {
        let mut it = self.start_line.splitn(3, ' ');
        let version = it.next().unwrap_or_default();
        let code = it.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!("bad status line: {:?}", self.start_line)));
        }
        code.parse::<u16>()
            .map_err(|_| invalid(format!("bad status line: {:?}", self.start_line)))
    }

    /// Is this an HTTP/1.0 message (no keep-alive unless asked for)?
    pub fn is_http10(&self) -> bool {
        self.start_line.contains("HTTP/1.0")
    }

    /// Body framing of a request carrying this head (RFC 9112 §6.3).
    pub fn request_body(&self) -> io::Result<BodyKind> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(BodyKind::Chunked);
        }
        if self.header("transfer-encoding").is_some() {
            return Err(invalid("unsupported request transfer-encoding"));
        }
        match self.content_length()? {
            Some(0) | None => Ok(BodyKind::Empty),
            Some(n) => Ok(BodyKind::Length(n)),
        }
    }

    /// Body framing of a response with this head to a request with `method`.
    pub fn response_body(&self, method: &str) -> io::Result<BodyKind> {
        let status = self.status()?;
        if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(BodyKind::Empty);
        }
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(BodyKind::Chunked);
        }
        if self.header("transfer-encoding").is_some() {
            return Ok(BodyKind::UntilClose);
        }
        match self.content_length()? {
            Some(0) => Ok(BodyKind::Empty),
            Some(n) => Ok(BodyKind::Length(n)),
            None => Ok(BodyKind::UntilClose),
        }
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        let mut found: Option<u64> = None;
        for (_, v) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            for part in v.split(',') {
                let n: u64 = part
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("bad content-length {v:?}")))?;
                if found.is_some_and(|f| f != n) {
                    return Err(invalid("conflicting content-length values"));
                }
                found = Some(n);
            }
        }
        Ok(found)
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one CRLF- (or LF-) terminated line, bounded by `limit` bytes.
/// Returns `None` at a clean EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-line",
            ));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > limit {
            return Err(invalid("HTTP line too long"));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

/// Reads a message head. `Ok(None)` means the peer closed the connection
/// cleanly before sending anything (the normal end of a keep-alive connection).
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Head>> {
    let mut total = 0usize;
    // Tolerate (and skip) empty lines before a request line (RFC 9112 §2.2).
    let start_line = loop {
        match read_line(r, MAX_HEAD).await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                total += l.len();
                break String::from_utf8(l).map_err(|_| invalid("non-UTF-8 start line"))?;
            }
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, MAX_HEAD)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in header"))?;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(invalid("HTTP head too large"));
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        if name.is_empty() || name.ends_with(' ') || name.ends_with('\t') {
            return Err(invalid(format!("bad header name {name:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head { start_line, headers }))
}

/// Copies exactly `n` bytes from `r` to `w`.
async fn copy_exact<R, W>(r: &mut R, w: &mut W, mut n: u64) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while n > 0 {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-body",
            ));
        }
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
        w.write_all(&buf[..take]).await?;
        r.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// Copies a body with the given framing from `r` to `w`, verbatim (chunk
/// framing and trailers included). Returns the number of payload bytes.
pub(crate) async fn copy_body<R, W>(r: &mut R, w: &mut W, kind: BodyKind) -> io::Result<u64>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match kind {
        BodyKind::Empty => Ok(0),
        BodyKind::Length(n) => {
            copy_exact(r, w, n).await?;
            Ok(n)
        }
        BodyKind::UntilClose => tokio::io::copy_buf(r, w).await,
        BodyKind::Chunked => {
            let mut payload = 0u64;
            loop {
                let line = read_line(r, 4096)
                    .await?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk"))?;
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or_default().trim();
                let size =
                    u64::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
                w.write_all(&line).await?;
                w.write_all(b"\r\n").await?;
                if size == 0 {
                    // Trailer section, ended by an empty line.
                    loop {
                        let t = read_line(r, MAX_HEAD)
                            .await?
                            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in trailers"))?;
                        w.write_all(&t).await?;
                        w.write_all(b"\r\n").await?;
                        if t.is_empty() {
                            return Ok(payload);
                        }
                    }
                }
                copy_exact(r, w, size).await?;
                payload += size;
                let crlf = read_line(r, 16)
                    .await?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF after chunk"))?;
                if !crlf.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
                w.write_all(b"\r\n").await?;
            }
        }
    }
}

/// Reads a body into memory (bounded by `limit` payload bytes), returning the
/// raw bytes as they appeared on the wire (for re-sending verbatim).
pub(crate) async fn read_body_raw<R>(r: &mut R, kind: BodyKind, limit: u64) -> io::Result<Vec<u8>>
where
    R: AsyncBufRead + Unpin,
{
    if let BodyKind::Length(n) = kind {
        if n > limit {
            return Err(invalid(format!("body of {n} bytes exceeds the proxy limit")));
        }
    }
    let mut out = Vec::new();
    match kind {
        BodyKind::UntilClose => {
            r.take(limit).read_to_end(&mut out).await?;
        }
        _ => {
            copy_body(r, &mut out, kind).await?;
        }
    }
    Ok(out)
}

/// Decodes a chunked body that has already been read raw into memory.
pub(crate) fn dechunk(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| invalid("truncated chunked body"))?;
        let text = String::from_utf8_lossy(&rest[..nl]);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
        rest = &rest[nl + 1..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn parses_head_and_chunked_body() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A:  b \r\n\r\n\
            4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut r = BufReader::new(wire);
        let head = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(head.status().unwrap(), 200);
        assert_eq!(head.header("x-a"), Some("b"));
        let kind = head.response_body("GET").unwrap();
        assert_eq!(kind, BodyKind::Chunked);
        let raw = read_body_raw(&mut r, kind, 1 << 20).await.unwrap();
        assert_eq!(dechunk(&raw).unwrap(), b"Wikipedia");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"NEXT");
    }

    #[tokio::test]
    async fn framing_rules() {
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..]);
        let h = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(h.response_body("HEAD").unwrap(), BodyKind::Empty);
        assert_eq!(h.response_body("GET").unwrap(), BodyKind::Length(10));
        let mut r = BufReader::new(&b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..]);
        let h = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(h.response_body("GET").unwrap(), BodyKind::Empty);
        let mut r = BufReader::new(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let h = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(h.response_body("GET").unwrap(), BodyKind::UntilClose);
        let mut r = BufReader::new(&b"PUT /a HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n"[..]);
        let h = read_head(&mut r).await.unwrap().unwrap();
        assert!(h.request_body().is_err());
        let mut r = BufReader::new(&b""[..]);
        assert!(read_head(&mut r).await.unwrap().is_none());
        let mut r = BufReader::new(&b"GET / HTTP/1.1\r\nHost: x"[..]);
        assert!(read_head(&mut r).await.is_err());
    }
}
