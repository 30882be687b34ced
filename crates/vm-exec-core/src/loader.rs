//! Building a fresh process from a [`Program`]: mapping its segments (and its interpreter's,
//! for a dynamically linked program) and laying out the initial stack exactly as Linux does.
//!
//! Layout of a guest address space of `size` bytes:
//! - the program's segments where they are linked (position-independent programs at
//!   [`PIE_BASE`]);
//! - a dynamically linked program's interpreter (`PT_INTERP`, an `ET_DYN`) at its own base,
//!   the highest free range of its size below the stack, as an `mmap` would place it; the
//!   thread starts at the interpreter's entry, and `AT_BASE` is its base;
//! - the heap (`brk`) starting at the first page after the highest segment, growing up;
//! - the stack's top at `size - STACK_GAP`, `stack_size` bytes mapped below it;
//! - `mmap` regions handed out top-down from below the stack.
//!
//! The initial stack, from the stack pointer up: `argc`, `argv[]`, NULL, `envp[]`, NULL,
//! auxiliary vector pairs ending with `AT_NULL`, then the 16 `AT_RANDOM` bytes and the
//! strings. The stack pointer is 16-byte aligned.

use crate::cpu::{reg, GuestThread};
use crate::elf::{ElfError, Program};
use crate::memory::{self, AddressSpace, MapError, PAGE_SIZE, PERM_EXEC, PERM_READ, PERM_WRITE};
use crate::process::{Process, ProcessConfig};
use std::sync::Arc;

/// Where a static-pie program is placed.
pub const PIE_BASE: u64 = 0x4000_0000;
/// Unmapped pages left above the stack.
const STACK_GAP: u64 = 16 * PAGE_SIZE;
/// Unmapped guard pages left below the stack.
const STACK_GUARD: u64 = 16 * PAGE_SIZE;

/// `AT_HWCAP` for RV64IMAFDC: one bit per single-letter extension.
pub const HWCAP_RV64GC: u64 = {
    let mut v = 0u64;
    let letters = b"IMAFDC";
    let mut i = 0;
    while i < letters.len() {
        v |= 1 << (letters[i] - b'A');
        i += 1;
    }
    v
};

/// Why a process could not be created.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ELF file was rejected.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The program does not fit the guest address space.
    #[error("program does not fit in the guest address space: {0}")]
    DoesNotFit(String),
    /// The host could not reserve or commit memory.
    #[error("host memory: {0}")]
    Host(#[from] std::io::Error),
    /// The program's interpreter is missing or unusable.
    #[error("{0}")]
    BadInterpreter(String),
    /// Arguments and environment are larger than the stack can hold.
    #[error("arguments and environment too large ({0} bytes)")]
    ArgsTooLarge(usize),
}

/// Creates the process image for `program` and its main thread, ready to run at the entry:
/// the program's own entry for a static program, the interpreter's entry (with `AT_BASE`,
/// `AT_PHDR`, `AT_ENTRY` describing the program, as Linux does) for a dynamically linked one,
/// whose interpreter must be in `config.interpreter`.
pub fn load(
    program: Arc<Program>,
    config: Arc<ProcessConfig>,
    pid: i32,
) -> Result<(Process, GuestThread), LoadError> {
    let interp = match (&program.interp, &config.interpreter) {
        (None, _) => None,
        (Some(_), Some(i)) => Some(i.clone()),
        (Some(path), None) => return Err(ElfError::DynamicallyLinked(path.clone()).into()),
    };
    if let Some(i) = &interp {
        if let Some(p) = &i.interp {
            return Err(LoadError::BadInterpreter(format!(
                "the interpreter is itself dynamically linked (PT_INTERP {p:?})"
            )));
        }
    }
    let mem = AddressSpace::new(config.memory_size)?;
    let size = mem.size();
    let bias = if program.position_independent { PIE_BASE } else { 0 };
    let stack_reserve = config.stack_size + STACK_GAP + STACK_GUARD;
    let high = map_image(&mem, &program, bias, size.saturating_sub(stack_reserve))?;

    mem.init_brk(high);
    let stack_top = size - STACK_GAP;
    let stack_bottom = stack_top - config.stack_size;
    mem.map_fixed(stack_bottom, config.stack_size, PERM_READ | PERM_WRITE).map_err(map_err)?;
    mem.set_mmap_area(
        memory::page_round_up(high).unwrap_or(high) + PAGE_SIZE,
        stack_bottom - STACK_GUARD,
    );
    // The interpreter goes where an mmap of its size would (Linux maps it like a library),
    // at its own load bias.
    let interp_bias = match &interp {
        None => None,
        Some(i) => {
            if !i.position_independent {
                return Err(LoadError::BadInterpreter(
                    "the interpreter is not position independent (ET_EXEC)".into(),
                ));
            }
            let (lo, hi) = i.address_range();
            let lo = lo & !(PAGE_SIZE - 1);
            let span = memory::page_round_up(hi - lo).ok_or_else(|| too_big(hi))?;
            let _layout = mem.layout_lock();
            let base = mem.find_free(span).ok_or_else(|| {
                LoadError::DoesNotFit(format!("no room for the {span:#x}-byte interpreter"))
            })?;
            let b = base - lo;
            map_image(&mem, i, b, stack_bottom - STACK_GUARD)?;
            Some(b)
        }
    };

    let process = Process::new(mem, program.clone(), config.clone(), pid);
    {
        let mut abi = process.abi();
        record_file_maps(&mut abi.file_maps, &program, bias);
        if let (Some(i), Some(b)) = (&interp, interp_bias) {
            record_file_maps(&mut abi.file_maps, i, b);
        }
    }
    let base = interp_bias.unwrap_or(0);
    let sp = build_stack(&process, stack_top, bias, base)?;
    let mut thread = GuestThread { tid: pid, ..Default::default() };
    thread.cpu.pc = match (&interp, interp_bias) {
        (Some(i), Some(b)) => i.entry + b,
        _ => program.entry + bias,
    };
    thread.cpu.x[reg::SP] = sp;
    Ok((process, thread))
}

/// Finds and parses the interpreter `program` names (its `PT_INTERP`), looking in `root`
/// first (the path inside the root, symbolic links resolved inside it), then on the host.
/// `Ok(None)` for a static program.
pub fn find_interpreter(
    program: &Program,
    root: Option<&std::path::Path>,
) -> Result<Option<Arc<Program>>, LoadError> {
    let Some(path) = &program.interp else { return Ok(None) };
    let host = root
        .and_then(|r| crate::syscall::resolve_in_root(r, path.as_bytes(), true))
        .unwrap_or_else(|| std::path::PathBuf::from(path));
    let interp = Program::open(&host).map_err(|e| {
        let where_ = match root {
            Some(r) => format!("in the root {} or on the host", r.display()),
            None => "on the host (no --root given)".to_string(),
        };
        match e {
            ElfError::Io(_) => {
                LoadError::BadInterpreter(format!("interpreter {path} not found {where_}"))
            }
            e => LoadError::BadInterpreter(format!("interpreter {path}: {e}")),
        }
    })?;
    Ok(Some(Arc::new(interp)))
}

/// Records the file-backed pages of `image`'s segments (placed at `bias`): from the page
/// holding a segment's start to the one holding its last file byte, as Linux maps them, so
/// that `MADV_DONTNEED` brings their file's bytes back. Pages already recorded (two segments
/// sharing a page) keep the first segment's.
fn record_file_maps(maps: &mut Vec<crate::process::FileMapping>, image: &Arc<Program>, bias: u64) {
    let mask = PAGE_SIZE - 1;
    for seg in &image.segments {
        if seg.file_size == 0 || (seg.vaddr ^ seg.file_offset) & mask != 0 {
            continue;
        }
        let mut start = (seg.vaddr + bias) & !mask;
        let Some(end) = memory::page_round_up(seg.vaddr + bias + seg.file_size) else { continue };
        let mut offset = seg.file_offset & !mask;
        if let Some(last) = maps.iter().map(|m| m.end).filter(|&e| e > start && e < end).max() {
            offset += last - start;
            start = last;
        }
        if start >= end || maps.iter().any(|m| m.start < end && m.end > start) {
            continue;
        }
        let m = crate::process::FileMapping {
            start,
            end,
            offset,
            source: crate::process::MapSource::Image(image.clone()),
        };
        crate::syscall::add_file_map(maps, m);
    }
}

/// Maps the segments of `image` at load bias `bias` (each page gets the union of the
/// permissions of the segments that touch it) and copies or maps their file bytes; every
/// segment must end at or below `limit`. Returns the highest address a segment occupies.
fn map_image(mem: &AddressSpace, image: &Program, bias: u64, limit: u64) -> Result<u64, LoadError> {
    let mut page_perms: std::collections::BTreeMap<u64, u8> = std::collections::BTreeMap::new();
    let mut high = 0u64;
    for seg in &image.segments {
        if seg.mem_size == 0 {
            continue;
        }
        let start = seg.vaddr.checked_add(bias).ok_or_else(|| too_big(seg.vaddr))?;
        let end = start.checked_add(seg.mem_size).ok_or_else(|| too_big(seg.vaddr))?;
        if end > limit {
            return Err(LoadError::DoesNotFit(format!(
                "segment {start:#x}..{end:#x} overlaps the stack area of a {:#x}-byte space",
                mem.size()
            )));
        }
        if start < PAGE_SIZE {
            return Err(LoadError::DoesNotFit(format!("segment at {start:#x} maps page zero")));
        }
        let mut perms = 0;
        if seg.flags & object::elf::PF_R != 0 {
            perms |= PERM_READ;
        }
        if seg.flags & object::elf::PF_W != 0 {
            perms |= PERM_READ | PERM_WRITE;
        }
        if seg.flags & object::elf::PF_X != 0 {
            perms |= PERM_EXEC;
        }
        let page_end = memory::page_round_up(end).ok_or_else(|| too_big(end))?;
        let mut page = start & !(PAGE_SIZE - 1);
        while page < page_end {
            *page_perms.entry(page).or_insert(0) |= perms;
            page += PAGE_SIZE;
        }
        high = high.max(end);
    }
    let mut pages = page_perms.into_iter().peekable();
    while let Some((run_start, perms)) = pages.next() {
        let mut run_end = run_start + PAGE_SIZE;
        while let Some(&(next, p)) = pages.peek() {
            if next != run_end || p != perms {
                break;
            }
            run_end += PAGE_SIZE;
            pages.next();
        }
        mem.map_fixed(run_start, run_end - run_start, perms).map_err(map_err)?;
    }
    // The file bytes: whole pages are mapped copy-on-write from the image's file (one copy
    // for every process of the image); partial pages, and everything when the host has no
    // such file or the segment is not page-congruent with the file, are copied. The host
    // pages are writable whatever the guest's permissions.
    let image_fd = image.image_fd();
    for seg in &image.segments {
        if seg.mem_size == 0 {
            continue;
        }
        let start = seg.vaddr + bias;
        let data = image.segment_data(seg);
        let shared = image_fd.and_then(|fd| {
            let first = memory::page_round_up(start)?;
            let last = (start + data.len() as u64) & !(PAGE_SIZE - 1);
            let congruent = (start ^ seg.file_offset) & (PAGE_SIZE - 1) == 0;
            let offset = seg.file_offset + (first - start);
            (congruent
                && first < last
                && mem.map_file_private(first, last - first, fd, offset).is_ok())
            .then_some((first, last))
        });
        match shared {
            Some((first, last)) => {
                let (head, rest) = data.split_at((first - start) as usize);
                write_ignoring_perms(mem, start, head);
                write_ignoring_perms(mem, last, &rest[(last - first) as usize..]);
            }
            None => write_ignoring_perms(mem, start, data),
        }
    }
    Ok(high)
}

fn too_big(addr: u64) -> LoadError {
    LoadError::DoesNotFit(format!("address {addr:#x} overflows"))
}

fn map_err(e: MapError) -> LoadError {
    LoadError::DoesNotFit(format!("cannot map segment ({e:?})"))
}

/// Copies loader data into guest memory regardless of the guest's page permissions; every
/// page of the range must be mapped.
pub(crate) fn write_ignoring_perms(mem: &AddressSpace, addr: u64, data: &[u8]) {
    // The caller mapped every page of the range, so this cannot fail.
    if let Err(e) = mem.write_initial(addr, data) {
        tracing::error!(addr, ?e, "loader write into guest memory failed");
    }
}

// Auxiliary vector keys.
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;

/// Writes argv, envp, auxv and strings below `top`; returns the initial stack pointer.
/// `bias` is the program's load bias, `base` the interpreter's (0 without one).
fn build_stack(p: &Process, top: u64, bias: u64, base: u64) -> Result<u64, LoadError> {
    let config = p.config.clone();
    let strings: usize =
        config.args.iter().chain(config.env.iter()).map(|s| s.len() + 1).sum::<usize>()
            + config.args.first().map_or(1, |a| a.len() + 1);
    let pointers = (config.args.len() + config.env.len() + 3) * 8 + 40 * 8;
    if (strings + pointers + 64) as u64 > config.stack_size / 4 {
        return Err(LoadError::ArgsTooLarge(strings + pointers));
    }
    let mut cursor = top;
    let mut push_bytes = |mem: &AddressSpace, bytes: &[u8]| -> u64 {
        cursor -= bytes.len() as u64 + 1;
        write_ignoring_perms(mem, cursor, bytes);
        write_ignoring_perms(mem, cursor + bytes.len() as u64, &[0]);
        cursor
    };
    let execfn = push_bytes(&p.mem, config.args.first().map_or(&b""[..], |a| a));
    let env_ptrs: Vec<u64> = config.env.iter().rev().map(|e| push_bytes(&p.mem, e)).collect();
    let arg_ptrs: Vec<u64> = config.args.iter().rev().map(|a| push_bytes(&p.mem, a)).collect();
    let mut random = [0u8; 16];
    p.fill_random(&mut random);
    cursor = (cursor - 16) & !15;
    let random_addr = cursor;
    write_ignoring_perms(&p.mem, random_addr, &random);

    let prog = &p.program;
    // SAFETY: getuid and friends have no preconditions and cannot fail.
    let (uid, euid, gid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    let auxv: [(u64, u64); 17] = [
        (AT_PHDR, if prog.phdr_vaddr != 0 { prog.phdr_vaddr + bias } else { 0 }),
        (AT_PHENT, prog.phent as u64),
        (AT_PHNUM, prog.phnum as u64),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_BASE, base),
        (AT_FLAGS, 0),
        (AT_ENTRY, prog.entry + bias),
        (AT_UID, uid as u64),
        (AT_EUID, euid as u64),
        (AT_GID, gid as u64),
        (AT_EGID, egid as u64),
        (AT_HWCAP, HWCAP_RV64GC),
        (AT_CLKTCK, 100),
        (AT_SECURE, 0),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn),
    ];
    let mut words: Vec<u64> = Vec::with_capacity(pointers / 8);
    words.push(config.args.len() as u64);
    words.extend(arg_ptrs.iter().rev());
    words.push(0);
    words.extend(env_ptrs.iter().rev());
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    words.push(AT_NULL);
    words.push(0);
    // `/proc/self/auxv` reads the same pairs, AT_NULL included.
    p.abi().auxv = auxv
        .iter()
        .chain(&[(AT_NULL, 0)])
        .flat_map(|&(k, v)| [k, v])
        .flat_map(u64::to_le_bytes)
        .collect();
    let sp = (cursor - words.len() as u64 * 8) & !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    write_ignoring_perms(&p.mem, sp, &bytes);
    Ok(sp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Program;

    fn tiny() -> Arc<Program> {
        Arc::new(Program::parse(crate::elf::tests_support::tiny_elf()).unwrap())
    }

    #[test]
    fn stack_holds_argc_argv_envp_auxv() {
        let config = ProcessConfig {
            args: vec![b"prog".to_vec(), b"one".to_vec()],
            env: vec![b"A=b".to_vec()],
            memory_size: 1 << 30,
            ..Default::default()
        };
        let (p, t) = load(tiny(), Arc::new(config), 7).unwrap();
        let sp = t.cpu.x[reg::SP];
        assert_eq!(sp % 16, 0);
        assert_eq!(t.cpu.pc, 0x10078);
        let m = &p.mem;
        assert_eq!(m.read_u64(sp).unwrap(), 2);
        assert_eq!(m.read_cstr(m.read_u64(sp + 8).unwrap(), 100).unwrap(), b"prog");
        assert_eq!(m.read_cstr(m.read_u64(sp + 16).unwrap(), 100).unwrap(), b"one");
        assert_eq!(m.read_u64(sp + 24).unwrap(), 0);
        assert_eq!(m.read_cstr(m.read_u64(sp + 32).unwrap(), 100).unwrap(), b"A=b");
        assert_eq!(m.read_u64(sp + 40).unwrap(), 0);
        let mut a = sp + 48;
        let mut seen = std::collections::HashMap::new();
        loop {
            let k = m.read_u64(a).unwrap();
            let v = m.read_u64(a + 8).unwrap();
            a += 16;
            if k == AT_NULL {
                break;
            }
            seen.insert(k, v);
        }
        assert_eq!(seen[&AT_PAGESZ], 4096);
        assert_eq!(seen[&AT_ENTRY], 0x10078);
        assert_eq!(seen[&AT_PHDR], 0x10040);
        assert_eq!(seen[&AT_HWCAP], 0x112d);
        assert!(m.read_bytes(seen[&AT_RANDOM], &mut [0; 16]).is_ok());
        // Text is executable, not writable.
        assert!(m.fetch_inst(0x10078).is_ok());
        assert!(p.mem.write_u8(0x10078, 0).is_err());
    }

    #[test]
    fn file_pages_are_shared_copy_on_write_and_partial_pages_are_exact() {
        use crate::elf_writer::{write_executable, SegmentSpec};
        use crate::memory::{PERM_EXEC, PERM_READ, PERM_WRITE};
        // Three and a half pages of "code", then data with a bss tail.
        let code: Vec<u8> = (0..0x3800u32).map(|i| (i * 7 + 3) as u8).collect();
        let data: Vec<u8> = (0..0x1100u32).map(|i| (i % 251) as u8 + 1).collect();
        let elf = write_executable(
            0x10000,
            &[
                SegmentSpec { addr: 0x10000, bytes: &code, zero_tail: 0, flags: 5 },
                SegmentSpec { addr: 0x40000, bytes: &data, zero_tail: 0x3000, flags: 6 },
            ],
        );
        let program = Arc::new(Program::parse(elf).unwrap());
        let config = Arc::new(ProcessConfig { memory_size: 16 << 20, ..Default::default() });
        let (a, _) = load(program.clone(), config.clone(), 1).unwrap();
        let (b, _) = load(program.clone(), config, 2).unwrap();
        for p in [&a, &b] {
            let mut got = vec![0; code.len() + 0x800];
            p.mem.read_bytes(0x10000, &mut got).unwrap();
            assert_eq!(&got[..code.len()], &code[..]);
            assert!(got[code.len()..].iter().all(|&x| x == 0), "past the code: zeros");
            let mut got = vec![0; data.len() + 0x3000];
            p.mem.read_bytes(0x40000, &mut got).unwrap();
            assert_eq!(&got[..data.len()], &data[..]);
            assert!(got[data.len()..].iter().all(|&x| x == 0), "bss: zeros");
        }
        // The whole pages come from the image's memory file, not from copies.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(maps.contains("memfd:vmx-image"), "no page is mapped from the image file");
        // A write to a shared text page (after mprotect) is private to its process.
        a.mem.protect(0x11000, 0x1000, PERM_READ | PERM_WRITE | PERM_EXEC).unwrap();
        a.mem.write_u32(0x11000, 0xdead_beef).unwrap();
        assert_eq!(a.mem.read_u32(0x11000).unwrap(), 0xdead_beef);
        let mut want = [0u8; 4];
        want.copy_from_slice(&code[0x1000..0x1004]);
        assert_eq!(b.mem.read_u32(0x11000).unwrap(), u32::from_le_bytes(want), "b unchanged");
        // And data writes stay private too.
        b.mem.write_u8(0x40000, 0).unwrap();
        assert_eq!(a.mem.read_u8(0x40000).unwrap(), data[0]);
    }

    #[test]
    fn oversized_programs_are_refused() {
        let config = ProcessConfig { memory_size: 1 << 20, ..Default::default() };
        assert!(matches!(load(tiny(), Arc::new(config), 1), Err(LoadError::DoesNotFit(_))));
    }
}
