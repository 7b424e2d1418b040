//! The glibc floor of a Linux x86-64 executable: the newest `GLIBC_x.y` symbol
//! version it needs, read from its ELF version-needs section (`.gnu.version_r`,
//! `SHT_GNU_verneed`), the same table `objdump -T` and the dynamic loader use.
//!
//! Why: the Functions host starts `handler` inside its own Linux image (Debian
//! bullseye, glibc 2.31, or bookworm, 2.36; Flex Consumption's image is not
//! published). A binary that needs a newer glibc than the image has never starts,
//! and the host only says it cannot start the worker. `hub2lake package` therefore
//! refuses a handler above [`GLIBC_FLOOR`].
//!
//! A small parser rather than a crate: it reads the ELF header, the section
//! headers and one section, with every offset checked against the file.

use std::fmt;
use std::path::Path;

/// The newest glibc the shipped handler may need. 2.28 is below every Functions v4
/// Linux image (bullseye 2.31, bookworm 2.36) and is what scripts/build-handler.sh
/// links against (`cargo zigbuild --target x86_64-unknown-linux-gnu.2.28`).
pub const GLIBC_FLOOR: GlibcVersion = GlibcVersion { major: 2, minor: 28 };

/// A `GLIBC_<major>.<minor>[.patch]` symbol version (the patch level never raises
/// the floor in practice and is ignored when comparing: 2.3.4 < 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl GlibcVersion {
    /// Parses `GLIBC_2.34` (or `GLIBC_2.2.5`); `None` for `GLIBC_PRIVATE` and non-glibc names.
    pub fn from_symbol_version(name: &str) -> Option<Self> {
        let digits = name.strip_prefix("GLIBC_")?;
        let mut parts = digits.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GLIBC_{}.{}", self.major, self.minor)
    }
}

/// Why an executable could not be read as a Linux x86-64 ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF executable (the Functions host on Linux needs a Linux x86-64 binary)")]
    NotElf,
    #[error("a 32-bit or big-endian ELF file (the Functions host needs a 64-bit little-endian x86-64 binary)")]
    NotElf64Le,
    #[error("an ELF binary for machine {machine}, not x86-64 (EM_X86_64 = 62): the Functions host runs on x86-64")]
    NotX86_64 { machine: u16 },
    #[error("malformed ELF file: {what} lies outside the file")]
    Truncated { what: &'static str },
}

/// The glibc versions an executable needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlibcNeeds {
    /// Every distinct `GLIBC_x.y` it needs, oldest first; empty for a static binary.
    pub versions: Vec<GlibcVersion>,
}

impl GlibcNeeds {
    /// The newest version needed: the oldest glibc it runs on. `None`: needs no glibc.
    pub fn newest(&self) -> Option<GlibcVersion> {
        self.versions.last().copied()
    }

    /// True when it runs on a glibc as old as `floor`.
    pub fn within(&self, floor: GlibcVersion) -> bool {
        self.newest().is_none_or(|v| v <= floor)
    }
}

/// Reads the glibc needs of the executable at `path`.
pub fn glibc_needs_of(path: &Path) -> Result<GlibcNeeds, ElfError> {
    let bytes = std::fs::read(path).map_err(|source| ElfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    glibc_needs(&bytes)
}

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const EM_X86_64: u16 = 62;
const SECTION_HEADER_SIZE: usize = 64;
const VERNEED_SIZE: usize = 16;
const VERNAUX_SIZE: usize = 16;

/// Reads the glibc needs from the bytes of a 64-bit little-endian x86-64 ELF file.
pub fn glibc_needs(bytes: &[u8]) -> Result<GlibcNeeds, ElfError> {
    let elf = Elf::new(bytes)?;
    let mut versions = Vec::new();
    for section in elf.sections()? {
        if section.kind == SHT_GNU_VERNEED {
            let strings = elf.section(section.link as usize)?;
            for name in elf.verneed_names(&section, &strings)? {
                versions.extend(GlibcVersion::from_symbol_version(name));
            }
        }
    }
    versions.sort();
    versions.dedup();
    Ok(GlibcNeeds { versions })
}

struct Elf<'a> {
    bytes: &'a [u8],
    section_offset: usize,
    section_count: usize,
    section_entry_size: usize,
}

#[derive(Debug, Clone, Copy)]
struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
    /// For SHT_GNU_verneed: the number of Verneed entries.
    info: u32,
}

impl<'a> Elf<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little-endian).
        if bytes.get(4..6) != Some([2u8, 1].as_slice()) {
            return Err(ElfError::NotElf64Le);
        }
        let machine = read_u16(bytes, 0x12, "ELF header")?;
        if machine != EM_X86_64 {
            return Err(ElfError::NotX86_64 { machine });
        }
        Ok(Self {
            bytes,
            section_offset: to_usize(read_u64(bytes, 0x28, "ELF header")?, "section header table")?,
            section_entry_size: read_u16(bytes, 0x3a, "ELF header")? as usize,
            section_count: read_u16(bytes, 0x3c, "ELF header")? as usize,
        })
    }

    fn sections(&self) -> Result<Vec<Section>, ElfError> {
        if self.section_count > 0 && self.section_entry_size < SECTION_HEADER_SIZE {
            return Err(ElfError::Truncated {
                what: "a section header",
            });
        }
        (0..self.section_count).map(|i| self.section(i)).collect()
    }

    fn section(&self, index: usize) -> Result<Section, ElfError> {
        let what = "a section header";
        let at = index
            .checked_mul(self.section_entry_size)
            .and_then(|o| o.checked_add(self.section_offset))
            .ok_or(ElfError::Truncated { what })?;
        let header = slice(self.bytes, at, SECTION_HEADER_SIZE, what)?;
        Ok(Section {
            kind: read_u32(header, 4, what)?,
            offset: to_usize(read_u64(header, 24, what)?, what)?,
            size: to_usize(read_u64(header, 32, what)?, what)?,
            link: read_u32(header, 40, what)?,
            info: read_u32(header, 44, what)?,
        })
    }

    /// Every version name in a version-needs section (`vna_name` of each Vernaux).
    fn verneed_names(&self, needs: &Section, strings: &Section) -> Result<Vec<&'a str>, ElfError> {
        let table = slice(self.bytes, needs.offset, needs.size, "the version-needs section")?;
        let strtab = slice(self.bytes, strings.offset, strings.size, "its string table")?;
        let mut names = Vec::new();
        let mut entry = 0usize;
        for _ in 0..needs.info {
            let what = "a version-needs entry";
            let verneed = slice(table, entry, VERNEED_SIZE, what)?;
            let aux_count = read_u16(verneed, 2, what)?;
            let mut aux = entry
                .checked_add(read_u32(verneed, 8, what)? as usize)
                .ok_or(ElfError::Truncated { what })?;
            for _ in 0..aux_count {
                let what = "a version-needs auxiliary entry";
                let vernaux = slice(table, aux, VERNAUX_SIZE, what)?;
                names.push(c_string(strtab, read_u32(vernaux, 8, what)? as usize)?);
                let next = read_u32(vernaux, 12, what)? as usize;
                if next == 0 {
                    break;
                }
                aux = aux.checked_add(next).ok_or(ElfError::Truncated { what })?;
            }
            let next = read_u32(verneed, 12, what)? as usize;
            if next == 0 {
                break;
            }
            entry = entry.checked_add(next).ok_or(ElfError::Truncated { what })?;
        }
        Ok(names)
    }
}

fn slice<'a>(bytes: &'a [u8], at: usize, len: usize, what: &'static str) -> Result<&'a [u8], ElfError> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or(ElfError::Truncated { what })
}

fn read_u16(bytes: &[u8], at: usize, what: &'static str) -> Result<u16, ElfError> {
    let b = slice(bytes, at, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(bytes: &[u8], at: usize, what: &'static str) -> Result<u32, ElfError> {
    let b = slice(bytes, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize, what: &'static str) -> Result<u64, ElfError> {
    let b = slice(bytes, at, 8, what)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(b);
    Ok(u64::from_le_bytes(word))
}

fn to_usize(value: u64, what: &'static str) -> Result<usize, ElfError> {
    usize::try_from(value).map_err(|_| ElfError::Truncated { what })
}

/// The NUL-terminated string at `at` in a string table (non-UTF-8 names read as "").
fn c_string(strtab: &[u8], at: usize) -> Result<&str, ElfError> {
    let what = "a version name";
    let rest = strtab.get(at..).ok_or(ElfError::Truncated { what })?;
    let end = rest.iter().position(|&b| b == 0).ok_or(ElfError::Truncated { what })?;
    Ok(std::str::from_utf8(&rest[..end]).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_numerically() {
        let v = |s| GlibcVersion::from_symbol_version(s).unwrap();
        assert!(v("GLIBC_2.9") < v("GLIBC_2.28"));
        assert!(v("GLIBC_2.2.5") < v("GLIBC_2.3"));
        assert_eq!(v("GLIBC_2.34").to_string(), "GLIBC_2.34");
        assert_eq!(GlibcVersion::from_symbol_version("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::from_symbol_version("GCC_3.0"), None);
    }

    /// This test program itself is a real ELF linked against this machine's glibc.
    #[test]
    fn reads_the_needs_of_a_real_executable_like_objdump() {
        let exe = std::env::current_exe().unwrap();
        let needs = glibc_needs_of(&exe).unwrap();
        let newest = needs.newest().expect("a dynamically linked test binary needs glibc");
        assert!(newest >= GlibcVersion { major: 2, minor: 2 }, "{newest}");
        assert!(needs.versions.windows(2).all(|w| w[0] < w[1]));
    }

    /// Renaming the base version every x86-64 glibc binary needs (GLIBC_2.2.5) to
    /// GLIBC_9.9.9 in a real executable's string table raises what it needs to 9.9.
    #[test]
    fn a_renamed_version_in_real_elf_bytes_is_what_it_needs() {
        let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let from = b"GLIBC_2.2.5\0";
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("an x86-64 glibc binary names GLIBC_2.2.5");
        bytes[at..at + from.len()].copy_from_slice(b"GLIBC_9.9.9\0");
        let needs = glibc_needs(&bytes).unwrap();
        assert_eq!(needs.newest(), Some(GlibcVersion { major: 9, minor: 9 }));
        assert!(!needs.within(GLIBC_FLOOR));
    }

    #[test]
    fn refuses_what_is_not_a_linux_x86_64_elf() {
        assert!(matches!(glibc_needs(b"#!/bin/sh\necho hi\n"), Err(ElfError::NotElf)));
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 1; // 32-bit
        header[5] = 1;
        assert!(matches!(glibc_needs(&header), Err(ElfError::NotElf64Le)));
        header[4] = 2;
        header[0x12] = 183; // EM_AARCH64
        assert!(matches!(
            glibc_needs(&header),
            Err(ElfError::NotX86_64 { machine: 183 })
        ));
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_panic() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [5, 20, 63, 64, 1000] {
            assert!(glibc_needs(&exe[..len]).is_err(), "prefix of {len} bytes");
        }
    }
}
