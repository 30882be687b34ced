//! The sandboxed guest address space.
//!
//! Invariants:
//! - Guest memory is one contiguous host reservation of `size` bytes (plus a guard region
//!   of [`GUARD_SIZE`] bytes on each side), made with `PROT_NONE`; guest address `a` lives at
//!   host address `base + a`. The guards are never mapped. Nothing outside
//!   `[base, base + size)` is ever read or written on a guest's behalf.
//! - Every guest page has its real protection on the host (`host_prot`): pages never
//!   mapped or unmapped are `PROT_NONE`, read-only (or execute-only) pages are read-only,
//!   writable pages are read-write, except that a writable page holding decoded code is
//!   read-only on the host (see below). The guest's own permissions (read, write, execute,
//!   code) also live in a per-page table that host code checks before every access. The
//!   host protection of a page changes only under the layout lock.
//! - Host code reaches guest bytes only through the guarded routines of `fault`: an access
//!   that passed its check and then faults (another thread unmapped or protected the page,
//!   or an engine write-protected it for code) is checked again and retried or reported as
//!   the guest fault; the host never crashes. Translated code relies on the host MMU alone
//!   plus one bound check, and the fault handler sends its faults to their slow paths.
//! - The space is shared by all threads of a guest process, which may run on different host
//!   threads at once: every method takes `&self`. Data accesses are plain host loads and stores
//!   (x86-64's TSO is stronger than RVWMO); atomics use host atomic instructions on the same
//!   bytes (see [`AddressSpace::atomic_update`]). Permission bytes are read and written as atomic
//!   bytes. Changes to the layout (map, unmap, protect, brk, remap) are serialized by one lock;
//!   a caller that needs several of them to appear as one (`mmap` = find + map) holds
//!   [`AddressSpace::layout_lock`] around them.
//! - Every access checks `addr + len <= size` and the page permission (both pages when an
//!   unaligned access straddles a page boundary). A failed check is a [`MemFault`], which the
//!   engines turn into a guest `SIGSEGV`; it never panics.
//! - Pages from which an engine has decoded or translated code carry the [`PERM_CODE`] bit. A
//!   store to such a page takes the slow path (host code sees the bit; translated code faults
//!   on the write-protected page and its handler takes the slow path): it makes the page
//!   writable again, performs the store, clears the bit and appends the page to the
//!   invalidation log. Every engine instance keeps its own position in that log
//!   (a generation number) and applies what it has not seen at block boundaries; one that fell
//!   further behind than the log's capacity drops all its code. The same happens when such a
//!   page is unmapped or loses its permissions.
//! - Freshly mapped pages read as zero.

use crate::sync::IgnorePoison;
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

/// Guard bytes reserved (`PROT_NONE`, never mapped) on each side of guest memory:
/// translated code checks only that the *base register* of an access is below the end and
/// adds the displacement (at most 2 KiB either way) in the host access, so an access that
/// runs over the end, or whose displacement takes it below address 0, faults in a guard.
pub const GUARD_SIZE: usize = 1 << 16;

/// The host protection of a page with guest permissions `perms`: readable when the guest
/// may read or execute it (the host reads instructions to decode them), writable when the
/// guest may write it and no engine holds code from it, else no access at all.
pub(crate) fn host_prot(perms: u8) -> i32 {
    let mut prot = libc::PROT_NONE;
    if perms & (PERM_READ | PERM_EXEC) != 0 {
        prot |= libc::PROT_READ;
    }
    if perms & PERM_WRITE != 0 && perms & PERM_CODE == 0 {
        prot |= libc::PROT_READ | libc::PROT_WRITE;
    }
    prot
}

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

mod access;
mod code;
mod fault;
mod fork;
mod layout;
#[cfg(test)]
mod tests;

use code::InvalidationLog;
pub use code::Invalidations;
pub use fault::{install_fault_handler, JitFaultScope, ScopeGuard};
use layout::Layout;

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
    /// Pages that got their code bit while writable (possibly with stale entries and
    /// duplicates; see [`AddressSpace::invalidate_all_code`]).
    writable_code: Mutex<Vec<u64>>,
    /// Length of `writable_code` after its last compaction.
    writable_code_floor: std::sync::atomic::AtomicUsize,
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
        fault::install_fault_handler();
        let whole = reserve(size as usize + 2 * GUARD_SIZE, libc::PROT_NONE)?;
        // SAFETY: the reservation is `GUARD_SIZE + size + GUARD_SIZE` bytes long.
        let base = unsafe { NonNull::new_unchecked(whole.as_ptr().add(GUARD_SIZE)) };
        let perms = match reserve(pages, libc::PROT_READ | libc::PROT_WRITE) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `whole` was returned by `reserve` with exactly this length and is not
                // referenced anywhere else yet.
                unsafe { libc::munmap(whole.as_ptr().cast(), size as usize + 2 * GUARD_SIZE) };
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
            writable_code: Mutex::new(Vec::new()),
            writable_code_floor: std::sync::atomic::AtomicUsize::new(0),
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
        self.layout.lock().ignore_poison()
    }

    /// Serializes compound layout changes: hold the guard around a sequence of calls (such as
    /// [`AddressSpace::find_free`] then [`AddressSpace::map_fixed`]) that other threads must
    /// not interleave with. Single calls are atomic without it.
    pub fn layout_lock(&self) -> MutexGuard<'_, ()> {
        self.compound.lock().ignore_poison()
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
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // SAFETY: both mappings were created in `new` with these lengths (the reservation
        // starts `GUARD_SIZE` below `base`) and are owned solely by this value; nothing
        // borrows them once it is dropped.
        unsafe {
            libc::munmap(
                self.base.as_ptr().sub(GUARD_SIZE).cast(),
                self.size as usize + 2 * GUARD_SIZE,
            );
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
