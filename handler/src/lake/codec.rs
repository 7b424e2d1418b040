//! The encodings a data object can have (plain JSON Lines, gzip, zstd), in one place:
//! the name and `Content-Encoding` of each, how a listing tells data objects by name,
//! the compressor that writes one and the decoder that reads one back.
//!
//! Readers pick the decoder per object from its first bytes (the gzip and zstd magic
//! numbers), which agree with the name the handler gave it. So a lake holding both
//! `.jsonl.gz` and `.jsonl.zst` objects (after `HUB2LAKE_COMPRESSION` changed) reads
//! alike everywhere, and the seal compacts an hour of either into the configured one.

use std::io::{self, BufRead, BufReader};
use std::sync::{Mutex, PoisonError};

use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

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
    Gzip(GzipSink),
    Zstd(ZstdSink),
}

impl CompressingWriter {
    /// `capacity` is the expected stored size, to size the output buffer once.
    pub fn new(compression: Compression, capacity: usize) -> Self {
        let out = Vec::with_capacity(capacity);
        let sink = match compression {
            Compression::None => Sink::Plain(out),
            Compression::Gzip { level } => Sink::Gzip(GzipSink::new(level, out)),
            Compression::Zstd { level } => Sink::Zstd(ZstdSink::new(level, out)),
        };
        Self { sink }
    }

    /// Whether bytes are stored as written (no compressor in between).
    pub fn is_plain(&self) -> bool {
        matches!(self.sink, Sink::Plain(_))
    }

    pub fn write(&mut self, bytes: &[u8]) {
        match &mut self.sink {
            Sink::Plain(v) => v.extend_from_slice(bytes),
            Sink::Gzip(g) => g.write(bytes),
            Sink::Zstd(z) => z.write(bytes),
        }
    }

    /// Makes the compressor emit everything written so far (a sync flush: the
    /// dictionary is kept, a few bytes are added), so [`Self::stored_len`] is current.
    pub fn flush(&mut self) {
        match &mut self.sink {
            Sink::Plain(_) => {}
            Sink::Gzip(g) => g.flush(),
            Sink::Zstd(z) => z.flush(),
        }
    }

    /// Stored bytes so far (the compressor may hold back input not yet flushed).
    pub fn stored_len(&self) -> u64 {
        (match &self.sink {
            Sink::Plain(v) => v.len(),
            Sink::Gzip(g) => g.out.len(),
            Sink::Zstd(z) => z.out.len(),
        }) as u64
    }

    /// The finished object: one gzip member or one zstd frame.
    pub fn finish(self) -> Vec<u8> {
        match self.sink {
            Sink::Plain(v) => v,
            Sink::Gzip(g) => g.finish(),
            Sink::Zstd(z) => z.finish(),
        }
    }
}

/// Compressor states kept between objects. A fresh state per object costs more than
/// it seems: at level 6 zlib-rs allocates ~270 KiB and libzstd at level 3 a few MiB
/// (tables and window), above the handler's 128 KiB mmap threshold
/// (`memory.rs`), so every object paid page faults and zeroing for them. Measured
/// with `hub2lake bench` (BENCHMARKS.md): reusing them cut the handler's system time
/// by three quarters with zstd. At most [`Pool::MAX_IDLE`] idle states are kept per
/// kind, so an idle handler holds a bounded few.
struct Pool<T> {
    idle: Mutex<Vec<(i32, T)>>,
}

impl<T> Pool<T> {
    /// Objects are encoded on a few threads at once (one per batch in flight, and the
    /// seal's); more idle states than that would only hold memory.
    const MAX_IDLE: usize = 4;

    const fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle state made for `level`, if there is one.
    fn take(&self, level: i32) -> Option<T> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let i = idle.iter().position(|(l, _)| *l == level)?;
        Some(idle.swap_remove(i).1)
    }

    fn give_back(&self, level: i32, state: T) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < Self::MAX_IDLE {
            idle.push((level, state));
        }
    }
}

static DEFLATE_STATES: Pool<flate2::Compress> = Pool::new();
static ZSTD_STATES: Pool<zstd::stream::raw::Encoder<'static>> = Pool::new();

/// Free space kept at the end of the output before each compressor call.
const OUTPUT_HEADROOM: usize = 16 * 1024;

/// One gzip member (RFC 1952) around a raw deflate stream from a reused state: the
/// same bytes flate2's `GzEncoder` writes (its header: no name, mtime 0, OS 255).
struct GzipSink {
    level: u32,
    deflate: Option<flate2::Compress>,
    crc: flate2::Crc,
    out: Vec<u8>,
}

impl GzipSink {
    fn new(level: u32, mut out: Vec<u8>) -> Self {
        let deflate = match DEFLATE_STATES.take(level as i32) {
            Some(mut state) => {
                state.reset();
                state
            }
            None => flate2::Compress::new(flate2::Compression::new(level), false),
        };
        out.extend_from_slice(&gzip_header(level));
        Self {
            level,
            deflate: Some(deflate),
            crc: flate2::Crc::new(),
            out,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.deflate(bytes, flate2::FlushCompress::None);
    }

    fn flush(&mut self) {
        self.deflate(&[], flate2::FlushCompress::Sync);
    }

    fn finish(mut self) -> Vec<u8> {
        self.deflate(&[], flate2::FlushCompress::Finish);
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        out
    }

    /// Compresses all of `input` into `out`, then as `flush` asks (zlib's contract:
    /// a flush is complete once a call leaves output space unused).
    fn deflate(&mut self, mut input: &[u8], flush: flate2::FlushCompress) {
        let Some(state) = self.deflate.as_mut() else { return };
        loop {
            self.out.reserve(OUTPUT_HEADROOM);
            let consumed_before = state.total_in();
            let result = state.compress_vec(input, &mut self.out, flush);
            input = &input[(state.total_in() - consumed_before) as usize..];
            let room_left = self.out.len() < self.out.capacity();
            let done = match (result, flush) {
                // Only misuse of the stream gets an error; deflate into memory has
                // nothing else that can fail.
                (Err(_), _) | (Ok(flate2::Status::StreamEnd), _) => true,
                (Ok(_), flate2::FlushCompress::None) => input.is_empty(),
                (Ok(_), flate2::FlushCompress::Finish) => false,
                (Ok(_), _) => input.is_empty() && room_left,
            };
            if done {
                return;
            }
        }
    }
}

impl Drop for GzipSink {
    fn drop(&mut self) {
        if let Some(state) = self.deflate.take() {
            DEFLATE_STATES.give_back(self.level as i32, state);
        }
    }
}

/// flate2's `GzBuilder` header for a member without name, comment or mtime: `XFL`
/// says "best" at level 9 and "fastest" at level 1, as RFC 1952 defines.
fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9.. => 2,
        ..=1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// One zstd frame from a reused libzstd context.
struct ZstdSink {
    level: i32,
    encoder: Option<zstd::stream::raw::Encoder<'static>>,
    out: Vec<u8>,
}

impl ZstdSink {
    fn new(level: i32, out: Vec<u8>) -> Self {
        let reused = ZSTD_STATES.take(level).and_then(|mut e| e.reinit().ok().map(|()| e));
        let encoder = reused.unwrap_or_else(|| match zstd::stream::raw::Encoder::new(level) {
            Ok(encoder) => encoder,
            // Only an allocation failure of the compression context gets here (the
            // level is checked at start-up and libzstd clamps it anyway); the process
            // cannot go on without memory, as with any other allocation, and an
            // object must never be stored empty.
            Err(e) => panic!("zstd cannot allocate a compression context: {e}"),
        });
        Self {
            level,
            encoder: Some(encoder),
            out,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some(encoder) = self.encoder.as_mut() else { return };
        let mut input = InBuffer::around(bytes);
        while input.pos < bytes.len() {
            self.out.reserve(OUTPUT_HEADROOM);
            let written = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, written);
            if encoder.run(&mut input, &mut output).is_err() {
                return;
            }
        }
    }

    fn flush(&mut self) {
        self.end(|e, out| e.flush(out));
    }

    fn finish(mut self) -> Vec<u8> {
        self.end(|e, out| e.finish(out, false));
        std::mem::take(&mut self.out)
    }

    /// Calls `step` (flush or finish) until libzstd says nothing is left to write.
    fn end(
        &mut self,
        step: impl Fn(&mut zstd::stream::raw::Encoder<'static>, &mut OutBuffer<'_, Vec<u8>>) -> io::Result<usize>,
    ) {
        let Some(encoder) = self.encoder.as_mut() else { return };
        loop {
            self.out.reserve(OUTPUT_HEADROOM);
            let written = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, written);
            match step(encoder, &mut output) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for ZstdSink {
    fn drop(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            ZSTD_STATES.give_back(self.level, encoder);
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

    /// What flate2's `GzEncoder` and the zstd crate's stream encoder (fresh states,
    /// used before the pool) write for the same writes and flushes.
    fn reference(compression: Compression, chunks: &[&[u8]], flush_after: Option<usize>) -> Vec<u8> {
        use std::io::Write;
        match compression {
            Compression::Gzip { level } => {
                let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                for (i, c) in chunks.iter().enumerate() {
                    g.write_all(c).unwrap();
                    if flush_after == Some(i) {
                        g.flush().unwrap();
                    }
                }
                g.finish().unwrap()
            }
            Compression::Zstd { level } => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
                for (i, c) in chunks.iter().enumerate() {
                    z.write_all(c).unwrap();
                    if flush_after == Some(i) {
                        z.flush().unwrap();
                    }
                }
                z.finish().unwrap()
            }
            Compression::None => unreachable!(),
        }
    }

    fn pooled(compression: Compression, chunks: &[&[u8]], flush_after: Option<usize>) -> Vec<u8> {
        let mut w = CompressingWriter::new(compression, 0);
        for (i, c) in chunks.iter().enumerate() {
            w.write(c);
            if flush_after == Some(i) {
                w.flush();
            }
        }
        w.finish()
    }

    #[test]
    fn reused_compressor_states_write_the_same_bytes_as_fresh_encoders() {
        let records = b"{\"operation_type\":\"insert\",\"n\":12345,\"notes\":\"lorem ipsum dolor\"}\n".repeat(4000);
        let other = b"{\"b\":[1,2,3]}\n".repeat(10);
        for compression in [
            Compression::Gzip { level: 1 },
            Compression::Gzip { level: 6 },
            Compression::Gzip { level: 9 },
            Compression::Zstd { level: 1 },
            Compression::Zstd { level: 3 },
            Compression::Zstd { level: 19 },
        ] {
            // Several objects in a row: from the second on, the state is a reused one.
            for round in 0..3 {
                let chunks: Vec<&[u8]> = records.chunks(64 * 1024).chain([&other[..]]).collect();
                assert_eq!(
                    pooled(compression, &chunks, None),
                    reference(compression, &chunks, None),
                    "{compression:?} round {round}"
                );
                assert_eq!(
                    pooled(compression, &[&other], Some(0)),
                    reference(compression, &[&other], Some(0)),
                    "{compression:?} flushed, round {round}"
                );
            }
        }
    }

    #[test]
    fn an_object_dropped_unfinished_leaves_no_trace_in_the_next() {
        let text = b"{\"a\":1}\n".repeat(1000);
        for compression in [Compression::Gzip { level: 6 }, Compression::Zstd { level: 3 }] {
            let mut abandoned = CompressingWriter::new(compression, 0);
            abandoned.write(&b"{\"half\":".repeat(5000));
            drop(abandoned);
            assert_eq!(
                pooled(compression, &[&text], None),
                reference(compression, &[&text], None)
            );
            assert_eq!(decode_object(&pooled(compression, &[&text], None)).unwrap(), text);
        }
    }

    #[test]
    fn the_gzip_header_marks_the_extreme_levels() {
        assert_eq!(gzip_header(1)[8], 4);
        assert_eq!(gzip_header(6)[8], 0);
        assert_eq!(gzip_header(9)[8], 2);
        assert_eq!(gzip_header(6)[9], 255);
    }

    proptest::proptest! {
        #[test]
        fn any_writes_match_the_fresh_encoders(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 0..6),
            flush_after in proptest::option::of(0usize..6),
            level in 1u32..=9,
            zstd in proptest::prelude::any::<bool>(),
        ) {
            let compression = if zstd { Compression::Zstd { level: level as i32 } } else { Compression::Gzip { level } };
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(pooled(compression, &chunks, flush_after), reference(compression, &chunks, flush_after));
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
