//! Writing minimal static RV64 executables from raw code and data.
//!
//! Tests and tools that generate guest code (the engines' differential tests, fuzzers) use
//! this to get a real ELF file that goes through the same loader as any program.
//! Invariant: the output always parses with [`crate::elf::Program::parse`] as an `ET_EXEC`
//! with one read+execute segment holding the code and, if data is given, one read+write
//! segment holding the data.

/// One segment to write.
#[derive(Clone, Debug)]
pub struct SegmentSpec<'a> {
    /// Guest address (page aligned).
    pub addr: u64,
    /// Contents.
    pub bytes: &'a [u8],
    /// Extra zero bytes after `bytes` (like `.bss`).
    pub zero_tail: u64,
    /// `PF_R | PF_W | PF_X` flags.
    pub flags: u32,
}

/// Builds an executable that enters at `entry` with the given segments.
pub fn write_executable(entry: u64, segments: &[SegmentSpec<'_>]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let headers = EHDR + PHDR * segments.len();
    // File offsets must be congruent to addresses modulo the page size.
    let mut offsets = Vec::with_capacity(segments.len());
    let mut cursor = headers as u64;
    for s in segments {
        let want = s.addr % 4096;
        let mut off = (cursor & !4095) + want;
        if off < cursor {
            off += 4096;
        }
        offsets.push(off);
        cursor = off + s.bytes.len() as u64;
    }
    let mut f = vec![0u8; cursor as usize];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&243u16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
    f[48..52].copy_from_slice(&5u32.to_le_bytes()); // EF_RISCV_RVC | EF_RISCV_FLOAT_ABI_DOUBLE
    f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (i, (s, &off)) in segments.iter().zip(&offsets).enumerate() {
        let ph = EHDR + i * PHDR;
        let filesz = s.bytes.len() as u64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        f[ph + 4..ph + 8].copy_from_slice(&s.flags.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&s.addr.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&s.addr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&(filesz + s.zero_tail).to_le_bytes());
        f[ph + 48..ph + 56].copy_from_slice(&4096u64.to_le_bytes());
        f[off as usize..(off + filesz) as usize].copy_from_slice(s.bytes);
    }
    f
}

/// Builds an executable whose code (at `0x10000`, entered at its start) is `code`, with an
/// optional read-write data segment at `0x20_0000`.
pub fn simple_executable(code: &[u8], data: &[u8]) -> Vec<u8> {
    let mut segs = vec![SegmentSpec { addr: 0x10000, bytes: code, zero_tail: 0, flags: 5 }];
    if !data.is_empty() {
        segs.push(SegmentSpec { addr: 0x20_0000, bytes: data, zero_tail: 0, flags: 6 });
    }
    write_executable(0x10000, &segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Program;

    #[test]
    fn written_files_parse_back() {
        let code = [0x73, 0, 0, 0];
        let p = Program::parse(simple_executable(&code, b"data")).unwrap();
        assert_eq!(p.entry, 0x10000);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segment_data(&p.segments[0]), &code);
        assert_eq!(p.segment_data(&p.segments[1]), b"data");
        assert_eq!(p.segments[1].vaddr, 0x20_0000);
    }
}
