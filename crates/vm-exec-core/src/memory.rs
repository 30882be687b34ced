//! The sandboxed guest address space.
//!
//! Invariants:
//! - Guest memory is one contiguous host reservation of `size` bytes (plus a guard region),
//!   made with `PROT_NONE`; guest address `a` lives at host address `base + a`. Nothing outside
//!   `[base, base + size)` is ever read or written on a guest's behalf.
//! - A host page becomes readable and writable for the host when the guest first maps it;
//!   the guest's own permissions (read, write, execute) live in a per-page table that every
//!   access checks. Pages never mapped stay `PROT_NONE` on the host. Unmapping frees a page's
//!   memory (fresh zero pages replace it) but leaves it host-accessible: a guest thread that
//!   passed a permission check just before another thread unmapped the page then touches a
//!   dead zero page, never a host fault.
//! - The space is shared by all threads of a guest process, which may run on different host
//!   threads at once: every method takes `&self`. Data accesses are plain host loads and stores
//!   (x86-64's TSO is stronger than RVWMO); atomics use host atomic instructions on the same
//!   bytes (see [`AddressSpace::atomic_u32`]). Permission bytes are read and written as atomic
//!   bytes. Changes to the layout (map, unmap, protect, brk, remap) are serialized by one lock;
//!   a caller that needs several of them to appear as one (`mmap` = find + map) holds
//!   [`AddressSpace::layout_lock`] around them.
//! - Every access checks `addr + len <= size` and the page permission (both pages when an
//!   unaligned access straddles a page boundary). A failed check is a [`MemFault`], which the
//!   engines turn into a guest `SIGSEGV`; it never panics.
//! - Pages from which an engine has decoded or translated code carry the [`PERM_CODE`] bit. A
//!   store to such a page takes the slow path: it performs the store, clears the bit and appends
//!   the page to the invalidation log. Every engine instance keeps its own position in that log
//!   (a generation number) and applies what it has not seen at block boundaries; one that fell
//!   further behind than the log's capacity drops all its code. The same happens when such a
//!   page is unmapped or loses its permissions.
//! - Freshly mapped pages read as zero.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Size of a guest page in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

/// Guest may read the page.
pub const PERM_READ: u8 = 1;
/// Guest may write the page.
pub const PERM_WRITE: u8 = 2;
/// Guest may execute the page.
pub const PERM_EXEC: u8 = 4;
/// An engine holds decoded or translated code from this page.
pub const PERM_CODE: u8 = 8;
/// The page is mapped (possibly with no access rights, like `PROT_NONE`).
pub const PERM_MAPPED: u8 = 16;

/// Guard bytes reserved past the end of guest memory. Engines never rely on them for safety,
/// but they turn an off-by-a-few host bug into a host fault rather than a silent write.
const GUARD_SIZE: usize = 1 << 16;

/// What kind of access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A data load.
    Read,
    /// A data store (or the store half of an atomic).
    Write,
    /// An instruction fetch.
    Execute,
}

/// A guest memory access that the guest is not allowed to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFault {
    /// The guest address of the access.
    pub addr: u64,
    /// The kind of access.
    pub kind: AccessKind,
}

/// Why a memory-management request failed; each maps onto a Linux errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No room in the guest address space (`ENOMEM`).
    NoMemory,
    /// Bad alignment or range (`EINVAL`).
    Invalid,
    /// The host refused to commit memory (`ENOMEM` as well, logged).
    Host,
}

impl MapError {
    /// The Linux errno for this error.
    pub fn errno(self) -> i64 {
        match self {
            MapError::NoMemory | MapError::Host => libc::ENOMEM as i64,
            MapError::Invalid => libc::EINVAL as i64,
        }
    }
}

/// Converts `PROT_*` bits (as the guest passes them to `mmap`/`mprotect`) to page permissions.
pub fn perms_from_prot(prot: u64) -> u8 {
    let mut p = PERM_MAPPED;
    if prot & libc::PROT_READ as u64 != 0 {
        p |= PERM_READ;
    }
    if prot & libc::PROT_WRITE as u64 != 0 {
        // Linux on RISC-V: write implies read.
        p |= PERM_WRITE | PERM_READ;
    }
    if prot & libc::PROT_EXEC as u64 != 0 {
        p |= PERM_EXEC;
    }
    p
}

/// Rounds `v` up to a multiple of the page size, or `None` on overflow.
pub fn page_round_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1))
}

/// Pages per chunk of the mapped-page summary the mmap search uses (2 MiB).
const CHUNK_PAGES: u64 = 512;

/// Most entries the invalidation log keeps; an engine further behind drops all its code.
const INVALIDATION_LOG_CAPACITY: usize = 4096;

/// What an engine must drop, from [`AddressSpace::invalidations_since`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidations {
    /// Code decoded from these pages (page-aligned addresses) is stale.
    Pages(Vec<u64>),
    /// The engine fell behind the log: all its code is stale.
    All,
}

/// The last [`INVALIDATION_LOG_CAPACITY`] invalidated pages; entry `i` has generation
/// `first + i + 1`.
#[derive(Default)]
struct InvalidationLog {
    first: u64,
    pages: VecDeque<u64>,
}

/// Heap and mmap bookkeeping (behind the layout lock).
struct Layout {
    /// Start of the heap (page aligned), set by the loader.
    brk_start: u64,
    /// Current program break (not necessarily page aligned).
    brk: u64,
    /// Highest address (exclusive) the mmap allocator hands out.
    mmap_top: u64,
    /// Lowest address the mmap allocator may hand out.
    mmap_floor: u64,
}

/// One guest's memory: a host reservation, a permission per page, brk and mmap bookkeeping.
pub struct AddressSpace {
    /// Unique in the host process (see [`AddressSpace::id`]).
    id: u64,
    base: NonNull<u8>,
    size: u64,
    perms: NonNull<u8>,
    pages: usize,
    /// Mapped pages per chunk of [`CHUNK_PAGES`] pages (changed under the layout lock), so
    /// that the mmap search skips whole mapped or free chunks.
    chunk_mapped: Box<[AtomicU32]>,
    /// Number of invalidations ever logged (see module docs).
    generation: AtomicU64,
    log: Mutex<InvalidationLog>,
    layout: Mutex<Layout>,
    /// Held by callers that make several layout changes appear as one.
    compound: Mutex<()>,
}

// SAFETY: the raw pointers refer to a private host mapping owned by this value; moving the
// owner between threads moves the only handle to it.
unsafe impl Send for AddressSpace {}
// SAFETY: shared use from several host threads is the point (guest threads of one process).
// The permission table is only accessed as atomic bytes; layout bookkeeping and the
// invalidation log sit behind mutexes; guest data bytes are accessed through raw pointers
// into the reservation, which stays mapped (host-accessible once mapped, see module docs)
// for the value's whole life, so concurrent accesses can race only with each other, the way
// the guest's own unsynchronized accesses race on real hardware.
unsafe impl Sync for AddressSpace {}

impl std::fmt::Debug for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = self.layout();
        f.debug_struct("AddressSpace")
            .field("size", &self.size)
            .field("brk_start", &l.brk_start)
            .field("brk", &l.brk)
            .finish_non_exhaustive()
    }
}

impl AddressSpace {
    /// Reserves `size` bytes of guest address space (rounded up to whole pages, at least one
    /// page). Nothing is mapped yet.
    pub fn new(size: u64) -> std::io::Result<Self> {
        let size = page_round_up(size.max(PAGE_SIZE))
            .filter(|s| *s <= 1 << 46)
            .ok_or_else(|| std::io::Error::other("guest address space too large"))?;
        let pages = (size >> PAGE_SHIFT) as usize;
        let base = reserve(size as usize + GUARD_SIZE, libc::PROT_NONE)?;
        let perms = match reserve(pages, libc::PROT_READ | libc::PROT_WRITE) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `base` was returned by `reserve` with exactly this length and is not
                // referenced anywhere else yet.
                unsafe { libc::munmap(base.as_ptr().cast(), size as usize + GUARD_SIZE) };
                return Err(e);
            }
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(AddressSpace {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            base,
            size,
            perms,
            pages,
            chunk_mapped: (0..(pages as u64).div_ceil(CHUNK_PAGES))
                .map(|_| AtomicU32::new(0))
                .collect(),
            generation: AtomicU64::new(0),
            log: Mutex::new(InvalidationLog::default()),
            layout: Mutex::new(Layout {
                brk_start: 0,
                brk: 0,
                mmap_top: size,
                mmap_floor: PAGE_SIZE * 16,
            }),
            compound: Mutex::new(()),
        })
    }

    fn layout(&self) -> MutexGuard<'_, Layout> {
        self.layout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serializes compound layout changes: hold the guard around a sequence of calls (such as
    /// [`AddressSpace::find_free`] then [`AddressSpace::map_fixed`]) that other threads must
    /// not interleave with. Single calls are atomic without it.
    pub fn layout_lock(&self) -> MutexGuard<'_, ()> {
        self.compound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An id no other address space of this host process has, ever: an engine that caches
    /// code compares it to know whether it is still looking at the same guest memory.
    #[inline(always)]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size of the guest address space in bytes; valid guest addresses are `0..size`.
    #[inline(always)]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest address 0. Engines that generate code compute host addresses as
    /// `host_base + guest_addr` after checking the access.
    #[inline(always)]
    pub fn host_base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The permission table: one byte per guest page, `PERM_*` bits.
    #[inline(always)]
    pub fn perm_table(&self) -> *const u8 {
        self.perms.as_ptr()
    }

    /// Permissions of the page holding `addr` (0 for addresses outside the space).
    #[inline(always)]
    pub fn page_perms(&self, addr: u64) -> u8 {
        let page = (addr >> PAGE_SHIFT) as usize;
        if page < self.pages {
            self.perm_at(page)
        } else {
            0
        }
    }

    /// The permission byte of `page` as an atomic.
    #[inline(always)]
    fn perm_cell(&self, page: usize) -> &AtomicU8 {
        assert!(page < self.pages);
        // SAFETY: `page < self.pages` (asserted; callers pass pages of addresses that passed
        // the `addr + len <= size` check, so it never fails); the table is a private RW
        // mapping of `pages` bytes that lives as long as `self`, and every access to it goes
        // through `AtomicU8` (which has the layout of `u8`).
        unsafe { &*(self.perms.as_ptr().add(page) as *const AtomicU8) }
    }

    #[inline(always)]
    fn perm_at(&self, page: usize) -> u8 {
        self.perm_cell(page).load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn set_perm(&self, page: usize, p: u8) {
        self.perm_cell(page).store(p, Ordering::Relaxed);
    }

    /// Clears the code bit of `page`; logs an invalidation if it was set.
    fn uncode_page(&self, page: u64) {
        let old = self.perm_cell(page as usize).fetch_and(!PERM_CODE, Ordering::Relaxed);
        if old & PERM_CODE != 0 {
            self.log_invalidation(page << PAGE_SHIFT);
        }
    }

    /// Sets the permissions of `page` (under the layout lock) and returns the old ones,
    /// logging an invalidation if the page held code. Only a page with the code bit pays for
    /// an atomic swap: the code bit is the one part of the byte set outside the layout lock,
    /// and a decode racing with the change of a page's permissions only ever concerns a
    /// guest that must `fence.i` before running modified code anyway.
    fn replace_perm(&self, page: u64, new: u8) -> u8 {
        let cell = self.perm_cell(page as usize);
        let old = cell.load(Ordering::Relaxed);
        if old & PERM_CODE != 0 {
            let old = cell.swap(new, Ordering::Relaxed);
            self.log_invalidation(page << PAGE_SHIFT);
            return old;
        }
        if old != new {
            cell.store(new, Ordering::Relaxed);
        }
        old
    }

    fn log_invalidation(&self, page_addr: u64) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.pages.push_back(page_addr);
        if log.pages.len() > INVALIDATION_LOG_CAPACITY {
            log.pages.pop_front();
            log.first += 1;
        }
        self.generation.store(log.first + log.pages.len() as u64, Ordering::Release);
    }

    /// Checks that `len` bytes at `addr` are inside the space and every touched page has all
    /// of `need`'s bits. Returns the host pointer.
    #[inline(always)]
    fn check(&self, addr: u64, len: u64, need: u8, kind: AccessKind) -> Result<*mut u8, MemFault> {
        let fault = MemFault { addr, kind };
        if addr > self.size - len {
            return Err(fault);
        }
        let page = (addr >> PAGE_SHIFT) as usize;
        if self.perm_at(page) & need != need {
            return Err(fault);
        }
        if (addr & (PAGE_SIZE - 1)) + len > PAGE_SIZE && self.perm_at(page + 1) & need != need {
            return Err(MemFault { addr: (addr | (PAGE_SIZE - 1)) + 1, kind });
        }
        // SAFETY: `addr + len <= size`, so the pointer stays inside the reservation.
        Ok(unsafe { self.base.as_ptr().add(addr as usize) })
    }

    /// Checks a store: write permission, and the code bit sends it to the slow path.
    #[inline(always)]
    fn check_write(&self, addr: u64, len: u64) -> Result<*mut u8, MemFault> {
        let fault = MemFault { addr, kind: AccessKind::Write };
        if addr > self.size - len {
            return Err(fault);
        }
        let page = (addr >> PAGE_SHIFT) as usize;
        let straddles = (addr & (PAGE_SIZE - 1)) + len > PAGE_SIZE;
        let p = self.perm_at(page);
        if p & (PERM_WRITE | PERM_CODE) != PERM_WRITE
            || (straddles && self.perm_at(page + 1) & (PERM_WRITE | PERM_CODE) != PERM_WRITE)
        {
            return self.check_write_slow(addr, len);
        }
        // SAFETY: `addr + len <= size`, so the pointer stays inside the reservation.
        Ok(unsafe { self.base.as_ptr().add(addr as usize) })
    }

    #[cold]
    fn check_write_slow(&self, addr: u64, len: u64) -> Result<*mut u8, MemFault> {
        let ptr = self.check(addr, len, PERM_WRITE, AccessKind::Write)?;
        let first = addr >> PAGE_SHIFT;
        let last = (addr + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            self.uncode_page(page);
        }
        Ok(ptr)
    }

    /// Reads a little-endian value of `N` bytes.
    #[inline(always)]
    pub fn read<const N: usize>(&self, addr: u64) -> Result<[u8; N], MemFault> {
        let p = self.check(addr, N as u64, PERM_READ, AccessKind::Read)?;
        // SAFETY: `check` proved `[p, p + N)` lies in mapped guest memory that is host-readable.
        Ok(unsafe { std::ptr::read_unaligned(p as *const [u8; N]) })
    }

    /// Writes `N` bytes.
    #[inline(always)]
    pub fn write<const N: usize>(&self, addr: u64, v: [u8; N]) -> Result<(), MemFault> {
        let p = self.check_write(addr, N as u64)?;
        // SAFETY: `check_write` proved `[p, p + N)` lies in mapped, host-writable guest memory.
        unsafe { std::ptr::write_unaligned(p as *mut [u8; N], v) };
        Ok(())
    }

    /// Loads a byte.
    #[inline(always)]
    pub fn read_u8(&self, addr: u64) -> Result<u8, MemFault> {
        self.read::<1>(addr).map(|b| b[0])
    }
    /// Loads a little-endian u16.
    #[inline(always)]
    pub fn read_u16(&self, addr: u64) -> Result<u16, MemFault> {
        self.read(addr).map(u16::from_le_bytes)
    }
    /// Loads a little-endian u32.
    #[inline(always)]
    pub fn read_u32(&self, addr: u64) -> Result<u32, MemFault> {
        self.read(addr).map(u32::from_le_bytes)
    }
    /// Loads a little-endian u64.
    #[inline(always)]
    pub fn read_u64(&self, addr: u64) -> Result<u64, MemFault> {
        self.read(addr).map(u64::from_le_bytes)
    }
    /// Stores a byte.
    #[inline(always)]
    pub fn write_u8(&self, addr: u64, v: u8) -> Result<(), MemFault> {
        self.write(addr, [v])
    }
    /// Stores a little-endian u16.
    #[inline(always)]
    pub fn write_u16(&self, addr: u64, v: u16) -> Result<(), MemFault> {
        self.write(addr, v.to_le_bytes())
    }
    /// Stores a little-endian u32.
    #[inline(always)]
    pub fn write_u32(&self, addr: u64, v: u32) -> Result<(), MemFault> {
        self.write(addr, v.to_le_bytes())
    }
    /// Stores a little-endian u64.
    #[inline(always)]
    pub fn write_u64(&self, addr: u64, v: u64) -> Result<(), MemFault> {
        self.write(addr, v.to_le_bytes())
    }

    /// Fetches a 16-bit instruction parcel (needs execute permission).
    #[inline]
    pub fn fetch_u16(&self, addr: u64) -> Result<u16, MemFault> {
        let p = self.check(addr, 2, PERM_EXEC, AccessKind::Execute)?;
        // SAFETY: `check` proved the two bytes are mapped and host-readable.
        Ok(u16::from_le_bytes(unsafe { std::ptr::read_unaligned(p as *const [u8; 2]) }))
    }

    /// Fetches one whole instruction (16 or 32 bits, by its low bits) at `addr`. The upper
    /// half of a compressed instruction's word is zero.
    pub fn fetch_inst(&self, addr: u64) -> Result<u32, MemFault> {
        let lo = self.fetch_u16(addr)?;
        if lo & 3 != 3 {
            return Ok(lo as u32);
        }
        let hi = self.fetch_u16(addr.wrapping_add(2))?;
        Ok(lo as u32 | (hi as u32) << 16)
    }

    /// Copies guest memory into `out` (needs read permission on every byte).
    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> Result<(), MemFault> {
        let slice = self.slice(addr, out.len() as u64, PERM_READ, AccessKind::Read)?;
        out.copy_from_slice(slice);
        Ok(())
    }

    /// Copies `data` into guest memory (needs write permission on every byte).
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemFault> {
        let dst = self.slice_mut(addr, data.len() as u64)?;
        dst.copy_from_slice(data);
        Ok(())
    }

    /// Borrows `len` guest bytes at `addr` for reading; every page must have `need`.
    pub fn slice(
        &self,
        addr: u64,
        len: u64,
        need: u8,
        kind: AccessKind,
    ) -> Result<&[u8], MemFault> {
        if len == 0 {
            return Ok(&[]);
        }
        if addr > self.size || len > self.size - addr {
            return Err(MemFault { addr, kind });
        }
        let first = addr >> PAGE_SHIFT;
        let last = (addr + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            if self.perm_at(page as usize) & need != need {
                return Err(MemFault { addr: (page << PAGE_SHIFT).max(addr), kind });
            }
        }
        // SAFETY: the range is inside the reservation and every page is mapped (host RW). The
        // borrow of `self` keeps the mapping alive and unchanged for the slice's lifetime.
        Ok(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(addr as usize), len as usize)
        })
    }

    /// Borrows `len` guest bytes at `addr` for writing (write permission on every page; pages
    /// holding code are logged for invalidation).
    ///
    /// Other guest threads of the process may access the same bytes meanwhile (a race in the
    /// guest program, as on hardware); the host only ever copies into the slice.
    #[allow(clippy::mut_from_ref)]
    pub fn slice_mut(&self, addr: u64, len: u64) -> Result<&mut [u8], MemFault> {
        if len == 0 {
            return Ok(&mut []);
        }
        self.slice(addr, len, PERM_WRITE, AccessKind::Write)?;
        let first = addr >> PAGE_SHIFT;
        let last = (addr + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            self.uncode_page(page);
        }
        // SAFETY: checked above as for `slice`: the range is inside the reservation and
        // host-writable, and stays so while `self` lives (see module docs). The bytes are guest
        // memory that only guest code and system calls made on its behalf touch.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr as usize), len as usize)
        })
    }

    /// The aligned guest word at `addr` as a host atomic, for AMOs, LR/SC and futexes. Needs
    /// read and write permission; `addr` must be 4-byte aligned (else `None`).
    pub fn atomic_u32(&self, addr: u64) -> Result<Option<&AtomicU32>, MemFault> {
        if addr & 3 != 0 {
            return Ok(None);
        }
        let p = self.check_write(addr, 4)?;
        self.check(addr, 4, PERM_READ, AccessKind::Read)?;
        // SAFETY: `p` is 4-byte aligned (the base is page aligned), inside the reservation and
        // host-writable for as long as `self` lives; `AtomicU32` has the layout of `u32`.
        Ok(Some(unsafe { &*(p as *const AtomicU32) }))
    }

    /// The aligned guest doubleword at `addr` as a host atomic (see [`Self::atomic_u32`]).
    pub fn atomic_u64(&self, addr: u64) -> Result<Option<&AtomicU64>, MemFault> {
        if addr & 7 != 0 {
            return Ok(None);
        }
        let p = self.check_write(addr, 8)?;
        self.check(addr, 8, PERM_READ, AccessKind::Read)?;
        // SAFETY: as in `atomic_u32`, with 8-byte alignment.
        Ok(Some(unsafe { &*(p as *const AtomicU64) }))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, MemFault> {
        let mut out = Vec::new();
        let mut a = addr;
        loop {
            if a >= self.size {
                return Err(MemFault { addr: a, kind: AccessKind::Read });
            }
            // Read page by page so long strings cost one check per page.
            let page_end = (a | (PAGE_SIZE - 1)) + 1;
            let chunk = self.slice(a, page_end - a, PERM_READ, AccessKind::Read)?;
            if let Some(n) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..n]);
                break;
            }
            out.extend_from_slice(chunk);
            if out.len() > max {
                break;
            }
            a = page_end;
        }
        out.truncate(max);
        Ok(out)
    }

    /// Marks the pages holding `[addr, addr + len)` as holding decoded code.
    pub fn mark_code(&self, addr: u64, len: u64) {
        if len == 0 || addr >= self.size {
            return;
        }
        let last = ((addr + len - 1).min(self.size - 1)) >> PAGE_SHIFT;
        for page in (addr >> PAGE_SHIFT)..=last {
            self.perm_cell(page as usize).fetch_or(PERM_CODE, Ordering::Relaxed);
        }
    }

    /// The invalidation log's generation: how many invalidations were ever logged. An engine
    /// that has applied everything up to generation `g` has nothing to do while this is `g`.
    #[inline(always)]
    pub fn code_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What was invalidated after generation `seen`, and the generation that covers it.
    pub fn invalidations_since(&self, seen: u64) -> (Invalidations, u64) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = log.first + log.pages.len() as u64;
        if seen < log.first || seen > now {
            return (Invalidations::All, now);
        }
        let pages = log.pages.iter().skip((seen - log.first) as usize).copied().collect();
        (Invalidations::Pages(pages), now)
    }

    /// Treats every code page as stale (for `fence.i` and `riscv_flush_icache`).
    pub fn invalidate_all_code(&self) {
        for page in 0..self.pages {
            if self.perm_at(page) & PERM_CODE != 0 {
                self.uncode_page(page as u64);
            }
        }
    }

    fn page_range(&self, addr: u64, len: u64) -> Result<(u64, u64), MapError> {
        if addr & (PAGE_SIZE - 1) != 0 {
            return Err(MapError::Invalid);
        }
        let len = page_round_up(len).ok_or(MapError::Invalid)?;
        let end = addr.checked_add(len).ok_or(MapError::NoMemory)?;
        if end > self.size {
            return Err(MapError::NoMemory);
        }
        Ok((addr, end))
    }

    /// Maps `[addr, addr + len)` (page aligned) with `perms`, replacing whatever was there;
    /// the new pages read as zero.
    pub fn map_fixed(&self, addr: u64, len: u64, perms: u8) -> Result<(), MapError> {
        let _l = self.layout();
        self.map_fixed_locked(addr, len, perms)
    }

    fn map_fixed_locked(&self, addr: u64, len: u64, perms: u8) -> Result<(), MapError> {
        let (start, end) = self.page_range(addr, len)?;
        if start == end {
            return Ok(());
        }
        self.release(start, end)?;
        // SAFETY: `[start, end)` is inside the reservation (checked by `page_range`).
        let rc = unsafe {
            libc::mprotect(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            tracing::warn!(start, end, "host mprotect failed while mapping guest memory");
            return Err(MapError::Host);
        }
        let (first, last) = (start >> PAGE_SHIFT, end >> PAGE_SHIFT);
        for page in first..last {
            self.set_perm(page as usize, perms | PERM_MAPPED);
        }
        // `release` above left every page of the range unmapped: count them per chunk.
        let mut page = first;
        while page < last {
            let chunk_end = ((page / CHUNK_PAGES) + 1) * CHUNK_PAGES;
            let n = chunk_end.min(last) - page;
            self.chunk_mapped[(page / CHUNK_PAGES) as usize].fetch_add(n as u32, Ordering::Relaxed);
            page += n;
        }
        Ok(())
    }

    /// Unmaps `[addr, addr + len)`; unmapped pages in the range are fine.
    pub fn unmap(&self, addr: u64, len: u64) -> Result<(), MapError> {
        let _l = self.layout();
        self.unmap_locked(addr, len)
    }

    fn unmap_locked(&self, addr: u64, len: u64) -> Result<(), MapError> {
        let (start, end) = self.page_range(addr, len)?;
        self.release(start, end)
    }

    /// Replaces `[start, end)` by fresh zero host pages (host-accessible, see the module docs)
    /// and clears the permissions.
    fn release(&self, start: u64, end: u64) -> Result<(), MapError> {
        let mut any_mapped = false;
        for page in (start >> PAGE_SHIFT)..(end >> PAGE_SHIFT) {
            let p = self.replace_perm(page, 0);
            if p != 0 {
                self.chunk_mapped[(page / CHUNK_PAGES) as usize].fetch_sub(1, Ordering::Relaxed);
                any_mapped = true;
            }
        }
        if !any_mapped {
            return Ok(());
        }
        // SAFETY: `[start, end)` lies inside our reservation; MAP_FIXED replaces only those
        // pages, which belong to this address space alone, by fresh zero pages with the same
        // host protection, so a concurrent access by another guest thread cannot fault.
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            tracing::warn!(start, end, "host mmap failed while unmapping guest memory");
            return Err(MapError::Host);
        }
        Ok(())
    }

    /// Makes the mapped pages `[addr, addr + len)` (page aligned) show the bytes of `fd` from
    /// `offset` (page aligned), copy-on-write: the host maps the file privately over them, so
    /// every process mapping the same file shares its pages until it writes to one. Their
    /// permissions are unchanged; the range must be mapped already.
    pub fn map_file_private(
        &self,
        addr: u64,
        len: u64,
        fd: std::os::fd::BorrowedFd<'_>,
        offset: u64,
    ) -> Result<(), MapError> {
        let _l = self.layout();
        let (start, end) = self.page_range(addr, len)?;
        if offset & (PAGE_SIZE - 1) != 0 {
            return Err(MapError::Invalid);
        }
        if ((start >> PAGE_SHIFT)..(end >> PAGE_SHIFT)).any(|p| self.perm_at(p as usize) == 0) {
            return Err(MapError::NoMemory);
        }
        for page in (start >> PAGE_SHIFT)..(end >> PAGE_SHIFT) {
            if self.perm_at(page as usize) & PERM_CODE != 0 {
                self.uncode_page(page);
            }
        }
        use std::os::fd::AsRawFd;
        // SAFETY: `[start, end)` lies inside our reservation and is mapped; MAP_FIXED replaces
        // only those pages, by a private (copy-on-write) mapping of the file that is host
        // readable and writable like every mapped guest page, so no access that passed a
        // permission check can fault on the host.
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            tracing::warn!(start, end, "host mmap of a file failed while loading guest memory");
            return Err(MapError::Host);
        }
        Ok(())
    }

    /// Zeroes the mapped pages of `[addr, addr + len)` (page aligned) and frees their memory,
    /// keeping their permissions: `MADV_DONTNEED` on private anonymous memory. Unmapped pages
    /// in the range are left alone; decoded code on the range is invalidated.
    pub fn discard(&self, addr: u64, len: u64) -> Result<(), MapError> {
        let _l = self.layout();
        let (start, end) = self.page_range(addr, len)?;
        let mut any_mapped = false;
        for page in (start >> PAGE_SHIFT)..(end >> PAGE_SHIFT) {
            let p = self.perm_at(page as usize);
            any_mapped |= p != 0;
            if p & PERM_CODE != 0 {
                self.uncode_page(page);
            }
        }
        if !any_mapped {
            return Ok(());
        }
        // SAFETY: `[start, end)` lies inside our reservation, which this address space owns;
        // on private anonymous memory MADV_DONTNEED only drops page contents (they read as
        // zero afterwards) and never changes protections or touches anything else.
        let rc = unsafe {
            libc::madvise(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            tracing::warn!(start, end, "host madvise failed while discarding guest memory");
            return Err(MapError::Host);
        }
        Ok(())
    }

    /// Changes the permissions of mapped pages. Fails with `NoMemory` (ENOMEM) if any page in
    /// the range is unmapped, like Linux.
    pub fn protect(&self, addr: u64, len: u64, perms: u8) -> Result<(), MapError> {
        let _l = self.layout();
        let (start, end) = self.page_range(addr, len)?;
        for page in (start >> PAGE_SHIFT)..(end >> PAGE_SHIFT) {
            if self.perm_at(page as usize) & PERM_MAPPED == 0 {
                return Err(MapError::NoMemory);
            }
        }
        for page in (start >> PAGE_SHIFT)..(end >> PAGE_SHIFT) {
            self.replace_perm(page, perms | PERM_MAPPED);
        }
        Ok(())
    }

    /// True if no page of `[start, end)` is mapped.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        if end > self.size || start > end {
            return false;
        }
        ((start >> PAGE_SHIFT)..(end >> PAGE_SHIFT)).all(|p| self.perm_at(p as usize) == 0)
    }

    /// Finds a free, page-aligned range of `len` bytes, searching down from the top of the
    /// mmap area (as Linux does). Returns its start.
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let l = self.layout();
        self.find_free_locked(&l, len)
    }

    fn find_free_locked(&self, l: &Layout, len: u64) -> Option<u64> {
        let len = page_round_up(len)?;
        if len == 0 || len > l.mmap_top {
            return None;
        }
        let floor = l.mmap_floor.max(page_round_up(l.brk).unwrap_or(self.size));
        let mut end = l.mmap_top & !(PAGE_SIZE - 1);
        while end >= floor + len {
            let start = end - len;
            // The highest mapped page of the candidate, if any; then continue below the mapped
            // run it belongs to. Whole free or whole mapped chunks are skipped at once.
            match self.highest_mapped(start >> PAGE_SHIFT, end >> PAGE_SHIFT) {
                None => return Some(start),
                Some(p) => end = self.bottom_of_mapped_run(p) << PAGE_SHIFT,
            }
        }
        None
    }

    /// Mapped pages in the chunk holding `page`.
    fn chunk_count(&self, page: u64) -> u32 {
        self.chunk_mapped[(page / CHUNK_PAGES) as usize].load(Ordering::Relaxed)
    }

    /// The highest mapped page in `[first, end)`.
    fn highest_mapped(&self, first: u64, end: u64) -> Option<u64> {
        let mut page = end;
        while page > first {
            // A whole chunk inside the range with nothing mapped: skip it.
            if page % CHUNK_PAGES == 0
                && page - CHUNK_PAGES >= first
                && self.chunk_count(page - 1) == 0
            {
                page -= CHUNK_PAGES;
                continue;
            }
            page -= 1;
            if self.perm_at(page as usize) != 0 {
                return Some(page);
            }
        }
        None
    }

    /// The lowest page of the run of mapped pages that ends at `page` (mapped).
    fn bottom_of_mapped_run(&self, mut page: u64) -> u64 {
        while page > 0 {
            // A whole chunk below that is fully mapped: skip it.
            if page % CHUNK_PAGES == 0 && self.chunk_count(page - 1) == CHUNK_PAGES as u32 {
                page -= CHUNK_PAGES;
                continue;
            }
            if self.perm_at(page as usize - 1) == 0 {
                break;
            }
            page -= 1;
        }
        page
    }

    /// Sets where the mmap allocator hands out addresses: `[floor, top)`.
    pub fn set_mmap_area(&self, floor: u64, top: u64) {
        let mut l = self.layout();
        l.mmap_floor = floor;
        l.mmap_top = top.min(self.size);
    }

    /// Sets the initial program break (page aligned up); called once by the loader.
    pub fn init_brk(&self, addr: u64) {
        let a = page_round_up(addr).unwrap_or(self.size);
        let mut l = self.layout();
        l.brk_start = a;
        l.brk = a;
    }

    /// The current program break.
    pub fn brk(&self) -> u64 {
        self.layout().brk
    }

    /// Linux `brk`: moves the break to `new` if possible and returns the resulting break.
    pub fn set_brk(&self, new: u64) -> u64 {
        let mut l = self.layout();
        if new < l.brk_start || new >= self.size {
            return l.brk;
        }
        let old_end = page_round_up(l.brk).unwrap_or(self.size);
        let new_end = match page_round_up(new) {
            Some(e) => e,
            None => return l.brk,
        };
        if new_end > old_end {
            if !self.is_free(old_end, new_end) {
                return l.brk;
            }
            if self.map_fixed_locked(old_end, new_end - old_end, PERM_READ | PERM_WRITE).is_err() {
                return l.brk;
            }
        } else if new_end < old_end && self.unmap_locked(new_end, old_end - new_end).is_err() {
            return l.brk;
        }
        l.brk = new;
        l.brk
    }

    /// Linux `mremap` for anonymous memory: grows or shrinks the mapping at `old`, moving it
    /// when `may_move` and it cannot grow in place. Returns the new address.
    pub fn remap(
        &self,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
    ) -> Result<u64, MapError> {
        let l = self.layout();
        let (start, old_end) = self.page_range(old, old_len)?;
        let new_len = page_round_up(new_len).ok_or(MapError::Invalid)?;
        if new_len == 0 {
            return Err(MapError::Invalid);
        }
        for page in (start >> PAGE_SHIFT)..(old_end >> PAGE_SHIFT) {
            if self.perm_at(page as usize) & PERM_MAPPED == 0 {
                return Err(MapError::Invalid);
            }
        }
        let new_end = start.checked_add(new_len).ok_or(MapError::NoMemory)?;
        if new_end <= old_end {
            self.unmap_locked(new_end, old_end - new_end)?;
            return Ok(start);
        }
        let perms = self.perm_at((start >> PAGE_SHIFT) as usize) & !PERM_CODE;
        if self.is_free(old_end, new_end) {
            self.map_fixed_locked(old_end, new_end - old_end, perms)?;
            return Ok(start);
        }
        if !may_move {
            return Err(MapError::NoMemory);
        }
        let dest = self.find_free_locked(&l, new_len).ok_or(MapError::NoMemory)?;
        self.map_fixed_locked(dest, new_len, perms)?;
        let n = (old_end - start) as usize;
        // SAFETY: both ranges are inside the reservation, mapped host-RW, and disjoint (dest
        // was free while the source is mapped).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start as usize),
                self.base.as_ptr().add(dest as usize),
                n,
            );
        }
        self.unmap_locked(start, old_end - start)?;
        Ok(dest)
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // SAFETY: both mappings were created in `new` with these lengths and are owned solely by
        // this value; nothing borrows them once it is dropped.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size as usize + GUARD_SIZE);
            libc::munmap(self.perms.as_ptr().cast(), self.pages);
        }
    }
}

/// Reserves `len` bytes of private anonymous host memory with protection `prot`.
fn reserve(len: usize, prot: i32) -> std::io::Result<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u8 = PERM_READ | PERM_WRITE;

    #[test]
    fn unmapped_memory_faults_and_mapped_memory_is_zero() {
        let m = AddressSpace::new(1 << 24).unwrap();
        assert_eq!(m.read_u64(0x1000), Err(MemFault { addr: 0x1000, kind: AccessKind::Read }));
        m.map_fixed(0x1000, 0x2000, RW).unwrap();
        assert_eq!(m.read_u64(0x1ff8).unwrap(), 0);
        m.write_u64(0x1ffc, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u64(0x1ffc).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u32(0x2000).unwrap(), 0x1122_3344);
        // Straddling into an unmapped page faults at the first byte of that page.
        assert_eq!(m.read_u64(0x2ffc), Err(MemFault { addr: 0x3000, kind: AccessKind::Read }));
    }

    #[test]
    fn out_of_range_and_wrapping_addresses_fault() {
        let m = AddressSpace::new(1 << 20).unwrap();
        for addr in [1 << 20, (1 << 20) - 4, u64::MAX, u64::MAX - 3, 1 << 63] {
            assert!(m.read_u64(addr).is_err(), "{addr:#x}");
        }
    }

    #[test]
    fn permissions_are_enforced() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x1000, PERM_READ).unwrap();
        assert!(m.read_u8(0x4000).is_ok());
        assert_eq!(m.write_u8(0x4000, 1).unwrap_err().kind, AccessKind::Write);
        assert!(m.fetch_u16(0x4000).is_err());
        m.protect(0x4000, 0x1000, PERM_READ | PERM_EXEC).unwrap();
        assert!(m.fetch_u16(0x4000).is_ok());
        m.protect(0x4000, 0x1000, 0).unwrap();
        assert!(m.read_u8(0x4000).is_err());
        assert_eq!(m.protect(0x8000, 0x1000, RW), Err(MapError::NoMemory));
    }

    #[test]
    fn unmap_then_map_gives_fresh_zero_pages() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x1000, RW).unwrap();
        m.write_u32(0x4000, 7).unwrap();
        m.unmap(0x4000, 0x1000).unwrap();
        assert!(m.read_u32(0x4000).is_err());
        m.map_fixed(0x4000, 0x1000, RW).unwrap();
        assert_eq!(m.read_u32(0x4000).unwrap(), 0);
    }

    #[test]
    fn stores_to_code_pages_queue_invalidations() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x2000, RW | PERM_EXEC).unwrap();
        m.write_u32(0x4000, 1).unwrap();
        assert_eq!(m.code_generation(), 0);
        m.mark_code(0x4ffe, 4);
        m.write_u32(0x5000, 2).unwrap();
        assert_eq!(m.invalidations_since(0), (Invalidations::Pages(vec![0x5000]), 1));
        m.write_u32(0x5000, 3).unwrap();
        assert_eq!(m.code_generation(), 1);
        m.write_u8(0x4fff, 3).unwrap();
        // Each reader keeps its own position in the log.
        assert_eq!(m.invalidations_since(1), (Invalidations::Pages(vec![0x4000]), 2));
        assert_eq!(m.invalidations_since(0), (Invalidations::Pages(vec![0x5000, 0x4000]), 2));
    }

    #[test]
    fn a_reader_far_behind_the_invalidation_log_drops_everything() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x1000, RW).unwrap();
        for _ in 0..INVALIDATION_LOG_CAPACITY + 1 {
            m.mark_code(0x4000, 4);
            m.write_u8(0x4000, 1).unwrap();
        }
        let now = INVALIDATION_LOG_CAPACITY as u64 + 1;
        assert_eq!(m.invalidations_since(0), (Invalidations::All, now));
        assert_eq!(m.invalidations_since(1), (Invalidations::Pages(vec![0x4000; 4096]), now));
        assert_eq!(m.invalidations_since(now + 5), (Invalidations::All, now));
    }

    #[test]
    fn unmapping_under_a_racing_reader_never_faults_the_host() {
        // One thread maps, writes and unmaps a page in a loop while another reads it through
        // raw slices that passed the permission check: the reader sees data or zeros, the
        // host never faults.
        let m = std::sync::Arc::new(AddressSpace::new(1 << 20).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (m, stop) = (m.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(s) = m.slice(0x4000, 4096, PERM_READ, AccessKind::Read) {
                        seen += s.iter().map(|&b| b as u64).sum::<u64>();
                    }
                }
                seen
            })
        };
        for i in 0..2000u32 {
            m.map_fixed(0x4000, 0x1000, RW).unwrap();
            m.write_u32(0x4000, i).unwrap();
            m.unmap(0x4000, 0x1000).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn find_free_with_chunk_skipping_matches_a_page_by_page_search() {
        // Random maps and unmaps across chunk boundaries; after each, the search must give
        // the highest free range, as a plain page-by-page scan does.
        let m = AddressSpace::new(64 << 20).unwrap();
        m.set_mmap_area(PAGE_SIZE * 16, 64 << 20);
        let reference = |len: u64| -> Option<u64> {
            let pages = len / PAGE_SIZE;
            let mut end = (64 << 20) / PAGE_SIZE;
            while end >= 16 + pages {
                let start = end - pages;
                match (start..end).rev().find(|&p| m.page_perms(p * PAGE_SIZE) != 0) {
                    None => return Some(start * PAGE_SIZE),
                    Some(p) => end = p,
                }
            }
            None
        };
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..400 {
            let addr = (16 + next(16_000)) * PAGE_SIZE;
            let len = (1 + next(1500)) * PAGE_SIZE;
            if addr + len < 64 << 20 {
                if next(3) == 0 {
                    m.unmap(addr, len).unwrap();
                } else {
                    m.map_fixed(addr, len, RW).unwrap();
                }
            }
            for len in [PAGE_SIZE, 37 * PAGE_SIZE, 600 * PAGE_SIZE, 3000 * PAGE_SIZE] {
                assert_eq!(m.find_free(len), reference(len), "len {len:#x}");
            }
        }
    }

    #[test]
    fn discard_zeroes_mapped_pages_and_keeps_their_permissions() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x2000, RW).unwrap();
        m.map_fixed(0x8000, 0x1000, PERM_READ).unwrap();
        m.write_u64(0x4ff8, 7).unwrap();
        m.write_u64(0x5000, 8).unwrap();
        m.mark_code(0x5000, 4);
        let g = m.code_generation();
        m.discard(0x4000, 0x5000).unwrap();
        assert_eq!((m.read_u64(0x4ff8), m.read_u64(0x5000)), (Ok(0), Ok(0)));
        assert_eq!(m.page_perms(0x4000) & RW, RW, "still writable");
        assert!(m.read_u8(0x6000).is_err(), "the unmapped page stays unmapped");
        assert_eq!(m.page_perms(0x8000) & (RW | PERM_MAPPED), PERM_READ | PERM_MAPPED);
        assert_eq!(m.invalidations_since(g).0, Invalidations::Pages(vec![0x5000]));
        assert_eq!(m.discard(0x4001, 0x1000), Err(MapError::Invalid));
    }

    #[test]
    fn host_atomics_on_guest_words() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x4000, 0x1000, RW).unwrap();
        let a = m.atomic_u32(0x4004).unwrap().unwrap();
        a.fetch_add(5, Ordering::SeqCst);
        assert_eq!(m.read_u32(0x4004).unwrap(), 5);
        assert!(m.atomic_u32(0x4006).unwrap().is_none(), "misaligned");
        assert!(m.atomic_u64(0x5000).is_err(), "unmapped");
        m.protect(0x4000, 0x1000, PERM_READ).unwrap();
        assert!(m.atomic_u64(0x4008).is_err(), "read-only");
    }

    #[test]
    fn brk_grows_and_shrinks() {
        let m = AddressSpace::new(1 << 24).unwrap();
        m.init_brk(0x10_0123);
        let b = m.brk();
        assert_eq!(b, 0x10_1000);
        assert_eq!(m.set_brk(b + 10), b + 10);
        m.write_u8(b + 9, 1).unwrap();
        assert_eq!(m.set_brk(b + 0x5000), b + 0x5000);
        m.write_u8(b + 0x4fff, 1).unwrap();
        assert_eq!(m.set_brk(b), b);
        assert!(m.read_u8(b).is_err());
        assert_eq!(m.set_brk(0), b, "below the start is refused");
    }

    #[test]
    fn find_free_searches_down_and_skips_mappings() {
        let m = AddressSpace::new(1 << 24).unwrap();
        m.set_mmap_area(0x10_0000, 0x20_0000);
        let a = m.find_free(0x3000).unwrap();
        assert_eq!(a, 0x20_0000 - 0x3000);
        m.map_fixed(a, 0x3000, RW).unwrap();
        m.map_fixed(a - 0x2000, 0x1000, RW).unwrap();
        let b = m.find_free(0x2000).unwrap();
        assert_eq!(b, a - 0x4000);
        assert!(m.find_free(0x10_0000).is_none());
    }

    #[test]
    fn remap_grows_in_place_or_moves_with_contents() {
        let m = AddressSpace::new(1 << 24).unwrap();
        m.set_mmap_area(0x10_0000, 0x80_0000);
        m.map_fixed(0x20_0000, 0x1000, RW).unwrap();
        m.write_u64(0x20_0ff8, 99).unwrap();
        assert_eq!(m.remap(0x20_0000, 0x1000, 0x3000, false).unwrap(), 0x20_0000);
        m.map_fixed(0x20_3000, 0x1000, RW).unwrap();
        assert_eq!(m.remap(0x20_0000, 0x3000, 0x8000, false), Err(MapError::NoMemory));
        let moved = m.remap(0x20_0000, 0x3000, 0x8000, true).unwrap();
        assert_ne!(moved, 0x20_0000);
        assert_eq!(m.read_u64(moved + 0xff8).unwrap(), 99);
        assert!(m.read_u8(0x20_0000).is_err());
        assert_eq!(m.remap(moved, 0x8000, 0x1000, false).unwrap(), moved);
        assert!(m.read_u8(moved + 0x1000).is_err());
    }

    #[test]
    fn cstr_reads_across_pages() {
        let m = AddressSpace::new(1 << 20).unwrap();
        m.map_fixed(0x1000, 0x2000, RW).unwrap();
        m.write_bytes(0x1ffe, b"hello\0").unwrap();
        assert_eq!(m.read_cstr(0x1ffe, 100).unwrap(), b"hello");
        assert_eq!(m.read_cstr(0x1ffe, 3).unwrap(), b"hel");
        m.write_bytes(0x2000, &[b'x'; 0x1000]).unwrap();
        assert!(m.read_cstr(0x2000, 1 << 20).is_err(), "runs into the unmapped page");
        assert!(m.read_cstr(u64::MAX - 2, 10).is_err());
    }
}
