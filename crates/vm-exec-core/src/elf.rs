//! Parsing an RV64 Linux ELF file (static, static-pie or dynamically linked) into a
//! [`Program`].
//!
//! Invariants:
//! - A `Program` is immutable once parsed and shared (behind an `Arc`) by every process that
//!   runs it; it keeps the file bytes it was parsed from: a heap copy ([`Program::parse`]) or
//!   a read-only private mapping of the file ([`Program::open`], which reads only the ELF
//!   header before deciding, so a huge file that is not a RISC-V ELF costs no memory).
//! - A dynamically linked program records its `PT_INTERP` path in [`Program::interp`]; the
//!   loader refuses it unless it is given the interpreter.
//! - Every segment of a `Program` has `file_size <= mem_size`, its file bytes lie inside the
//!   file, and its memory range (after adding the load bias of a static-pie) fits in a 64-bit
//!   address without overflow. Whether it fits a given guest address space is checked by the
//!   loader, which knows the space's size.
//! - Parsing never panics: every malformed, truncated or foreign file is an [`ElfError`] that
//!   names what is wrong.

use crate::sync::IgnorePoison;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use std::any::{Any, TypeId};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

/// Files larger than this are refused before parsing.
pub const MAX_ELF_SIZE: u64 = 1 << 30;

/// Why an ELF file cannot be run.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file at all.
    #[error("not an ELF file (bad magic number)")]
    NotElf,
    /// The file ends inside a header or segment.
    #[error("truncated ELF file: {0}")]
    Truncated(&'static str),
    /// A header field has a value that makes no sense.
    #[error("malformed ELF file: {0}")]
    Malformed(String),
    /// An ELF file for another machine or word size.
    #[error("wrong architecture: {0} (vm-executors runs 64-bit little-endian RISC-V programs)")]
    WrongArchitecture(String),
    /// Neither an executable nor a position-independent executable.
    #[error("unsupported ELF type {0} (expected an executable)")]
    NotExecutable(u16),
    /// The program needs a dynamic loader and none was given.
    #[error(
        "dynamically linked program (PT_INTERP {0:?}); give a root holding it (--root DIR) \
         or link the program with -static"
    )]
    DynamicallyLinked(String),
    /// The file could not be read.
    #[error("{0}")]
    Io(String),
    /// The file or one of its segments is too large.
    #[error("ELF file too large: {0}")]
    TooLarge(String),
}

/// One `PT_LOAD` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest virtual address (load bias not yet applied for static-pie programs).
    pub vaddr: u64,
    /// Size in memory; bytes past `file_size` are zero.
    pub mem_size: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Number of bytes taken from the file.
    pub file_size: u64,
    /// `PF_R | PF_W | PF_X` bits as in the program header.
    pub flags: u32,
}

/// The bytes of a program file: a heap copy or a read-only private mapping.
enum Bytes {
    Heap(Arc<[u8]>),
    Mapped { ptr: *const u8, len: usize },
}

// SAFETY: a `Mapped` region is read-only for its whole life (PROT_READ, MAP_PRIVATE) and
// unmapped only on drop, so sharing `&[u8]` views of it between threads is sound.
unsafe impl Send for Bytes {}
// SAFETY: as above.
unsafe impl Sync for Bytes {}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Heap(b) => b,
            // SAFETY: `ptr..ptr + len` is a live read-only mapping owned by `self`.
            Bytes::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Bytes::Mapped { ptr, len } = *self {
            // SAFETY: the mapping was made by `Program::open` with this address and length,
            // and nothing borrows it any more (it is dropped with its `Program`).
            unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Heap(b) => write!(f, "Heap({} bytes)", b.len()),
            Bytes::Mapped { len, .. } => write!(f, "Mapped({len} bytes)"),
        }
    }
}

/// A parsed, immutable guest program image.
#[derive(Debug)]
pub struct Program {
    bytes: Bytes,
    /// Entry point (before load bias).
    pub entry: u64,
    /// Loadable segments, in file order.
    pub segments: Vec<Segment>,
    /// Guest address of the program headers in memory (before load bias), if they are loaded.
    pub phdr_vaddr: u64,
    /// Number of program headers.
    pub phnum: u16,
    /// Size of one program header.
    pub phent: u16,
    /// Whether this is a static-pie (`ET_DYN`) that the loader must place at a bias.
    pub position_independent: bool,
    /// The `PT_INTERP` path of a dynamically linked program (the dynamic loader).
    pub interp: Option<String>,
    /// Per-engine data shared by every process that runs this image (see
    /// [`Program::image_cache`]).
    image_caches: ImageCaches,
    /// The opened file ([`Program::open`]) or the file's bytes in a sealed memfd, made on
    /// first use (see [`Program::image_fd`]).
    image_fd: OnceLock<Option<OwnedFd>>,
}

/// One value per type, made on first use.
#[derive(Default)]
struct ImageCaches(Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>);

impl std::fmt::Debug for ImageCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |v| v.len());
        write!(f, "ImageCaches({n})")
    }
}

impl Program {
    /// Data an engine keeps per program image and shares between every process (and thread)
    /// that runs it, such as decoded code: one value per type `T`, made by `init` on the
    /// first call. The image itself never changes, but processes can change their copy of
    /// it (self-modifying code), so whoever uses such data must check that it still matches
    /// the process's memory.
    pub fn image_cache<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut caches = self.image_caches.0.lock().ignore_poison();
        let id = TypeId::of::<T>();
        if let Some((_, v)) = caches.iter().find(|(t, _)| *t == id) {
            if let Ok(v) = v.clone().downcast::<T>() {
                return v;
            }
        }
        let v = Arc::new(init());
        caches.push((id, v.clone()));
        v
    }

    /// The file's bytes in a sealed, read-only host memory file, made on the first call, so
    /// that every process of this image can map its file-backed pages copy-on-write from one
    /// copy instead of copying them. `None` when the host cannot make one (the loader then
    /// copies).
    pub fn image_fd(&self) -> Option<BorrowedFd<'_>> {
        self.image_fd.get_or_init(|| sealed_memfd(&self.bytes)).as_ref().map(|fd| fd.as_fd())
    }

    /// Parses an ELF image.
    pub fn parse(bytes: impl Into<Arc<[u8]>>) -> Result<Program, ElfError> {
        let bytes: Arc<[u8]> = bytes.into();
        if bytes.len() as u64 > MAX_ELF_SIZE {
            return Err(ElfError::TooLarge(format!(
                "{} bytes (limit {MAX_ELF_SIZE})",
                bytes.len()
            )));
        }
        Self::parse_bytes(Bytes::Heap(bytes), None)
    }

    /// Opens and parses the ELF file at `path` without reading it whole: the identification
    /// and header are read first (a file that is not a 64-bit RISC-V ELF is refused there),
    /// then the file is mapped read-only and its descriptor serves as the image file that
    /// processes map their pages from.
    pub fn open(path: &std::path::Path) -> Result<Program, ElfError> {
        use std::io::Read;
        let io = |e: std::io::Error| ElfError::Io(format!("cannot read {}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(ElfError::Io(format!("{} is not a regular file", path.display())));
        }
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        check_ident(&head[..got])?;
        if got < head.len() {
            return Err(ElfError::Truncated("ELF header"));
        }
        let machine = u16::from_le_bytes([head[18], head[19]]);
        if machine != elf::EM_RISCV {
            return Err(ElfError::WrongArchitecture(format!("e_machine {machine}")));
        }
        let len = meta.len();
        if len > MAX_ELF_SIZE {
            return Err(ElfError::TooLarge(format!("{len} bytes (limit {MAX_ELF_SIZE})")));
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only private mapping of `len` (> 0) bytes of an open file; the
        // result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io(std::io::Error::last_os_error()));
        }
        let bytes = Bytes::Mapped { ptr: ptr as *const u8, len: len as usize };
        Self::parse_bytes(bytes, Some(OwnedFd::from(file)))
    }

    fn parse_bytes(bytes: Bytes, fd: Option<OwnedFd>) -> Result<Program, ElfError> {
        let data: &[u8] = &bytes;
        check_ident(data)?;
        if data.len() < 5 {
            return Err(ElfError::Truncated("ELF identification"));
        }
        match data[4] {
            elf::ELFCLASS64 => {}
            elf::ELFCLASS32 => return Err(ElfError::WrongArchitecture("32-bit ELF".into())),
            c => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
        }
        if data.len() < 6 {
            return Err(ElfError::Truncated("ELF identification"));
        }
        if data[5] != elf::ELFDATA2LSB {
            return Err(ElfError::WrongArchitecture("big-endian ELF".into()));
        }
        let header = elf::FileHeader64::<Endianness>::parse(data)
            .map_err(|_| ElfError::Truncated("ELF header"))?;
        let e = header.endian().map_err(|_| ElfError::Malformed("bad endianness".into()))?;
        let machine = header.e_machine(e);
        if machine != elf::EM_RISCV {
            return Err(ElfError::WrongArchitecture(format!("e_machine {machine}")));
        }
        let kind = header.e_type(e);
        let position_independent = match kind {
            elf::ET_EXEC => false,
            elf::ET_DYN => true,
            other => return Err(ElfError::NotExecutable(other)),
        };
        let phent = header.e_phentsize(e);
        if header.e_phnum(e) > 0 && phent as usize != size_of::<elf::ProgramHeader64<Endianness>>()
        {
            return Err(ElfError::Malformed(format!("program header size {phent}")));
        }
        let phdrs =
            header.program_headers(e, data).map_err(|_| ElfError::Truncated("program headers"))?;
        let phoff = header.e_phoff(e);
        let mut segments = Vec::new();
        let mut phdr_vaddr = None;
        let mut interp = None;
        for ph in phdrs {
            match ph.p_type(e) {
                elf::PT_INTERP => {
                    let d = ph.data(e, data).map_err(|_| ElfError::Truncated("PT_INTERP"))?;
                    let path = d.split(|&b| b == 0).next().unwrap_or(d);
                    if path.is_empty() || path.len() >= 4096 {
                        return Err(ElfError::Malformed("empty or overlong PT_INTERP".into()));
                    }
                    interp = Some(String::from_utf8_lossy(path).into_owned());
                }
                elf::PT_PHDR => phdr_vaddr = Some(ph.p_vaddr(e)),
                elf::PT_LOAD => {
                    let seg = Segment {
                        vaddr: ph.p_vaddr(e),
                        mem_size: ph.p_memsz(e),
                        file_offset: ph.p_offset(e),
                        file_size: ph.p_filesz(e),
                        flags: ph.p_flags(e),
                    };
                    validate_segment(&seg, data.len() as u64)?;
                    segments.push(seg);
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfError::Malformed("no loadable segments".into()));
        }
        let entry = header.e_entry(e);
        if !segments
            .iter()
            .any(|s| s.flags & elf::PF_X != 0 && entry >= s.vaddr && entry - s.vaddr < s.mem_size)
        {
            return Err(ElfError::Malformed(format!(
                "entry point {entry:#x} is not in an executable segment"
            )));
        }
        // Without PT_PHDR, the headers are in memory if a segment maps their file offset.
        let phdr_vaddr = phdr_vaddr
            .or_else(|| {
                segments.iter().find_map(|s| {
                    (phoff >= s.file_offset && phoff - s.file_offset < s.file_size)
                        .then(|| s.vaddr + (phoff - s.file_offset))
                })
            })
            .unwrap_or(0);
        let image_fd = OnceLock::new();
        if let Some(fd) = fd {
            let _ = image_fd.set(Some(fd));
        }
        Ok(Program {
            image_caches: ImageCaches::default(),
            image_fd,
            interp,
            entry,
            segments,
            phdr_vaddr,
            phnum: header.e_phnum(e),
            phent,
            position_independent,
            bytes,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file bytes of one segment (validated at parse time).
    pub fn segment_data(&self, seg: &Segment) -> &[u8] {
        &self.bytes[seg.file_offset as usize..(seg.file_offset + seg.file_size) as usize]
    }

    /// Lowest and highest (exclusive) guest address the segments occupy, before bias.
    pub fn address_range(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.vaddr).min().unwrap_or(0);
        let hi = self.segments.iter().map(|s| s.vaddr + s.mem_size).max().unwrap_or(0);
        (lo, hi)
    }
}

/// Checks the ELF identification bytes present in `data` (a prefix of the file).
fn check_ident(data: &[u8]) -> Result<(), ElfError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if let Some(&class) = data.get(4) {
        match class {
            elf::ELFCLASS64 => {}
            elf::ELFCLASS32 => return Err(ElfError::WrongArchitecture("32-bit ELF".into())),
            c => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
        }
    }
    if data.get(5).is_some_and(|&d| d != elf::ELFDATA2LSB) {
        return Err(ElfError::WrongArchitecture("big-endian ELF".into()));
    }
    Ok(())
}

fn validate_segment(s: &Segment, file_len: u64) -> Result<(), ElfError> {
    if s.file_size > s.mem_size {
        return Err(ElfError::Malformed(format!(
            "segment at {:#x} has file size {:#x} larger than memory size {:#x}",
            s.vaddr, s.file_size, s.mem_size
        )));
    }
    match s.file_offset.checked_add(s.file_size) {
        Some(end) if end <= file_len => {}
        _ => return Err(ElfError::Truncated("segment data")),
    }
    if s.vaddr.checked_add(s.mem_size).is_none_or(|end| end > 1 << 56) {
        return Err(ElfError::TooLarge(format!(
            "segment at {:#x} of {:#x} bytes",
            s.vaddr, s.mem_size
        )));
    }
    Ok(())
}

/// A memfd holding `bytes`, sealed against any change.
fn sealed_memfd(bytes: &[u8]) -> Option<OwnedFd> {
    // SAFETY: a NUL-terminated name and valid flags; the result is a new descriptor or -1.
    let raw = unsafe {
        libc::memfd_create(c"vmx-image".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a descriptor memfd_create just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    use std::io::Write;
    file.write_all(bytes).ok()?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on a descriptor we own, with an integer argument.
    if unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_ADD_SEALS, seals) } != 0 {
        return None;
    }
    Some(fd)
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Builds a minimal valid RV64 executable: one RX segment holding `ecall`.
    pub(crate) fn tiny_elf() -> Vec<u8> {
        let mut f = vec![0u8; 0x78 + 8];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x10078u64.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
        f[ph + 16..ph + 24].copy_from_slice(&0x10000u64.to_le_bytes()); // vaddr
        f[ph + 32..ph + 40].copy_from_slice(&(0x80u64).to_le_bytes()); // filesz
        f[ph + 40..ph + 48].copy_from_slice(&(0x80u64).to_le_bytes()); // memsz
        f[0x78..0x7c].copy_from_slice(&0x0000_0073u32.to_le_bytes()); // ecall
        f
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::tiny_elf;
    use super::*;

    #[test]
    fn parses_a_minimal_executable() {
        let p = Program::parse(tiny_elf()).unwrap();
        assert_eq!(p.entry, 0x10078);
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.phdr_vaddr, 0x10040);
        assert!(!p.position_independent);
    }

    #[test]
    fn rejects_foreign_and_broken_files() {
        assert_eq!(Program::parse(b"hello".to_vec()).unwrap_err(), ElfError::NotElf);
        let mut f = tiny_elf();
        f[18] = 62; // x86-64
        assert!(matches!(Program::parse(f).unwrap_err(), ElfError::WrongArchitecture(_)));
        let mut f = tiny_elf();
        f[4] = 1;
        assert!(matches!(Program::parse(f).unwrap_err(), ElfError::WrongArchitecture(_)));
        let mut f = tiny_elf();
        f[16] = 1; // ET_REL
        assert_eq!(Program::parse(f).unwrap_err(), ElfError::NotExecutable(1));
        let mut f = tiny_elf();
        f[64 + 32] = 0xff; // filesz > memsz
        assert!(matches!(Program::parse(f).unwrap_err(), ElfError::Malformed(_)));
        let mut f = tiny_elf();
        f[64] = 3; // PT_INTERP (and no PT_LOAD left)
        assert!(Program::parse(f).is_err());
        let f = tiny_elf();
        for n in 0..f.len() {
            assert!(Program::parse(f[..n].to_vec()).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn mutated_files_never_panic() {
        let base = tiny_elf();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut f = base.clone();
            for _ in 0..(state % 4 + 1) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % f.len() as u64) as usize;
                f[i] = (state >> 32) as u8;
            }
            let _ = Program::parse(f);
        }
    }
}
