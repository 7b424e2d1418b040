//! The encodings a data object can have (plain JSON Lines, gzip, zstd), in one place:
//! the name and `Content-Encoding` of each, how a listing tells data objects by name,
//! the compressor that writes one and the decoder that reads one back.
//!
//! Readers pick the decoder per object from its first bytes (the gzip and zstd magic
//! numbers), which agree with the name the handler gave it. So a lake holding both
//! `.jsonl.gz` and `.jsonl.zst` objects (after `HUB2LAKE_COMPRESSION` changed) reads
//! alike everywhere, and the seal compacts an hour of either into the configured one.

use std::io::{self, BufRead, BufReader, Write};

use flate2::write::GzEncoder;

use crate::config::Compression;

/// The encoding of one stored data object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEncoding {
    Plain,
    Gzip,
    Zstd,
}

/// The first bytes of a gzip member (RFC 1952).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first bytes of a zstd frame (RFC 8878), little-endian 0xFD2FB528.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Every encoding, longest extension first so a name matches its own.
const ALL: [ObjectEncoding; 3] = [ObjectEncoding::Zstd, ObjectEncoding::Gzip, ObjectEncoding::Plain];

impl ObjectEncoding {
    /// File extension of a data object, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Plain => "jsonl",
            Self::Gzip => "jsonl.gz",
            Self::Zstd => "jsonl.zst",
        }
    }

    /// The `Content-Encoding` stored with the object (none for plain JSON Lines).
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::Plain => None,
            Self::Gzip => Some("gzip"),
            Self::Zstd => Some("zstd"),
        }
    }

    /// The encoding a file name says it has, if it is named like a data object.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|e| {
            name.strip_suffix(e.extension())
                .is_some_and(|stem| stem.ends_with('.') && stem.len() > 1)
        })
    }

    /// The encoding the first bytes of an object show (plain when neither magic).
    pub fn sniff(prefix: &[u8]) -> Self {
        if prefix.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else if prefix.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else {
            Self::Plain
        }
    }
}

impl Compression {
    /// The encoding objects written with this setting have.
    pub fn encoding(self) -> ObjectEncoding {
        match self {
            Self::None => ObjectEncoding::Plain,
            Self::Gzip { .. } => ObjectEncoding::Gzip,
            Self::Zstd { .. } => ObjectEncoding::Zstd,
        }
    }
}

/// Whether a file name is named like a data object (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`).
pub fn is_data_name(name: &str) -> bool {
    ObjectEncoding::from_name(name).is_some()
}

/// The name without its data extension (`0-1-9.jsonl.zst` → `0-1-9`).
pub fn strip_data_extension(name: &str) -> Option<&str> {
    let encoding = ObjectEncoding::from_name(name)?;
    name.strip_suffix(encoding.extension())?.strip_suffix('.')
}

/// Reads the lines of an object of any encoding: `reader` is decompressed as its
/// first bytes say. Concatenated gzip members and zstd frames are read as one stream.
pub fn decoding_reader<'a, R: BufRead + Send + 'a>(mut reader: R) -> io::Result<Box<dyn BufRead + Send + 'a>> {
    Ok(match ObjectEncoding::sniff(reader.fill_buf()?) {
        ObjectEncoding::Plain => Box::new(reader),
        ObjectEncoding::Gzip => Box::new(BufReader::with_capacity(
            64 << 10,
            flate2::bufread::MultiGzDecoder::new(reader),
        )),
        ObjectEncoding::Zstd => Box::new(BufReader::with_capacity(
            64 << 10,
            zstd::stream::read::Decoder::with_buffer(reader)?,
        )),
    })
}

/// Decompresses a whole object of any encoding (plain objects are copied).
pub fn decode_object(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    io::copy(&mut decoding_reader(bytes)?, &mut out)?;
    Ok(out)
}

/// An object being written, compressed as it grows (never appended to later).
pub struct CompressingWriter {
    sink: Sink,
}

enum Sink {
    Plain(Vec<u8>),
    Gzip(Box<GzEncoder<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl CompressingWriter {
    /// `capacity` is the expected stored size, to size the output buffer once.
    pub fn new(compression: Compression, capacity: usize) -> Self {
        let out = Vec::with_capacity(capacity);
        let sink = match compression {
            Compression::None => Sink::Plain(out),
            Compression::Gzip { level } => Sink::Gzip(Box::new(GzEncoder::new(out, flate2::Compression::new(level)))),
            Compression::Zstd { level } => match zstd::stream::write::Encoder::new(out, level) {
                Ok(encoder) => Sink::Zstd(Box::new(encoder)),
                // Only an allocation failure of the compression context gets here (the
                // level is checked at start-up and libzstd clamps it anyway); the
                // process cannot go on without memory, as with any other allocation.
                Err(e) => panic!("zstd cannot allocate a compression context: {e}"),
            },
        };
        Self { sink }
    }

    /// Whether bytes are stored as written (no compressor in between).
    pub fn is_plain(&self) -> bool {
        matches!(self.sink, Sink::Plain(_))
    }

    pub fn write(&mut self, bytes: &[u8]) {
        // Writing into a Vec (directly or through a compressor) cannot fail.
        let _ = match &mut self.sink {
            Sink::Plain(v) => v.write_all(bytes),
            Sink::Gzip(g) => g.write_all(bytes),
            Sink::Zstd(z) => z.write_all(bytes),
        };
    }

    /// Makes the compressor emit everything written so far (a sync flush: the
    /// dictionary is kept, a few bytes are added), so [`Self::stored_len`] is current.
    pub fn flush(&mut self) {
        let _ = match &mut self.sink {
            Sink::Plain(_) => Ok(()),
            Sink::Gzip(g) => g.flush(),
            Sink::Zstd(z) => z.flush(),
        };
    }

    /// Stored bytes so far (the compressor may hold back input not yet flushed).
    pub fn stored_len(&self) -> u64 {
        (match &self.sink {
            Sink::Plain(v) => v.len(),
            Sink::Gzip(g) => g.get_ref().len(),
            Sink::Zstd(z) => z.get_ref().len(),
        }) as u64
    }

    /// The finished object: one gzip member or one zstd frame.
    pub fn finish(self) -> Vec<u8> {
        match self.sink {
            Sink::Plain(v) => v,
            // Finishing into a Vec cannot fail.
            Sink::Gzip(g) => g.finish().unwrap_or_default(),
            Sink::Zstd(z) => z.finish().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(compression: Compression, text: &[u8]) -> Vec<u8> {
        let mut w = CompressingWriter::new(compression, 0);
        w.write(text);
        w.finish()
    }

    #[test]
    fn every_encoding_round_trips_and_is_told_by_its_first_bytes() {
        let text = b"{\"a\":1}\n{\"b\":2}\n".repeat(500);
        for (compression, encoding) in [
            (Compression::None, ObjectEncoding::Plain),
            (Compression::Gzip { level: 6 }, ObjectEncoding::Gzip),
            (Compression::Zstd { level: 1 }, ObjectEncoding::Zstd),
            (Compression::Zstd { level: 19 }, ObjectEncoding::Zstd),
        ] {
            let bytes = written(compression, &text);
            assert_eq!(ObjectEncoding::sniff(&bytes), encoding, "{compression:?}");
            assert_eq!(compression.encoding(), encoding);
            assert_eq!(decode_object(&bytes).unwrap(), text, "{compression:?}");
        }
    }

    #[test]
    fn concatenated_frames_read_as_one_stream() {
        for compression in [Compression::Gzip { level: 1 }, Compression::Zstd { level: 3 }] {
            let mut bytes = written(compression, b"{\"a\":1}\n");
            bytes.extend(written(compression, b"{\"b\":2}\n"));
            assert_eq!(
                decode_object(&bytes).unwrap(),
                b"{\"a\":1}\n{\"b\":2}\n",
                "{compression:?}"
            );
        }
    }

    #[test]
    fn a_cut_zstd_object_is_an_error_not_short_data() {
        let bytes = written(Compression::Zstd { level: 3 }, &b"{\"a\":1}\n".repeat(1000));
        assert!(decode_object(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn flushing_makes_the_stored_length_current() {
        let mut w = CompressingWriter::new(Compression::Zstd { level: 3 }, 0);
        w.write(&b"{\"a\":1}\n".repeat(100));
        w.flush();
        let flushed = w.stored_len();
        assert!(flushed > 0);
        assert_eq!(decode_object(&w.finish()).unwrap().len(), 800);
    }

    #[test]
    fn data_names_carry_their_encoding() {
        assert_eq!(ObjectEncoding::from_name("0-1-9.jsonl.zst"), Some(ObjectEncoding::Zstd));
        assert_eq!(ObjectEncoding::from_name("0-1-9.jsonl.gz"), Some(ObjectEncoding::Gzip));
        assert_eq!(ObjectEncoding::from_name("0-1-9.jsonl"), Some(ObjectEncoding::Plain));
        assert_eq!(ObjectEncoding::from_name("0-1-9.json"), None);
        assert_eq!(ObjectEncoding::from_name("0-1-9.jsonl.zstd"), None);
        assert_eq!(ObjectEncoding::from_name(".jsonl.zst"), None);
        assert_eq!(strip_data_extension("a/0-1-9.jsonl.zst"), Some("a/0-1-9"));
        assert_eq!(strip_data_extension("a/0-1-9.jsonl"), Some("a/0-1-9"));
        assert!(is_data_name("x.jsonl.gz") && !is_data_name("_manifest.json"));
        for e in ALL {
            assert_eq!(ObjectEncoding::from_name(&format!("p.{}", e.extension())), Some(e));
        }
    }
}
