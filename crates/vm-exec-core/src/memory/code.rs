//! The code-invalidation log: which pages hold decoded code, and what engines must drop.
//!
//! See the invariants in the parent module.

use super::*;
use std::collections::VecDeque;

/// Most entries the invalidation log keeps; an engine further behind drops all its code.
pub(super) const INVALIDATION_LOG_CAPACITY: usize = 4096;

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
pub(super) struct InvalidationLog {
    pub(super) first: u64,
    pub(super) pages: VecDeque<u64>,
}

impl AddressSpace {
    /// Clears the code bit of `page`, making it writable on the host again if the guest may
    /// write it; logs an invalidation if the bit was set.
    pub(super) fn uncode_page(&self, page: u64) {
        if self.perm_at(page as usize) & PERM_CODE == 0 {
            return;
        }
        let _l = self.layout();
        self.uncode_page_locked(page);
    }

    /// [`Self::uncode_page`] for a caller that holds the layout lock.
    pub(super) fn uncode_page_locked(&self, page: u64) {
        let old = self.perm_cell(page as usize).fetch_and(!PERM_CODE, Ordering::Relaxed);
        if old & PERM_CODE != 0 {
            if old & PERM_WRITE != 0 {
                self.set_host_prot(page, page + 1, host_prot(old & !PERM_CODE));
            }
            self.log_invalidation(page << PAGE_SHIFT);
        }
    }

    /// Sets the host protection of pages `[first, last)` (under the layout lock). A failure
    /// is logged: it can only leave a page more protected than it should be, which shows as
    /// retried or faulting accesses, never as an access the guest may not make.
    pub(super) fn set_host_prot(&self, first: u64, last: u64, prot: i32) {
        if first >= last {
            return;
        }
        // SAFETY: the pages lie inside our reservation (callers pass pages of the space).
        let rc = unsafe {
            libc::mprotect(
                self.base.as_ptr().add((first << PAGE_SHIFT) as usize).cast(),
                ((last - first) << PAGE_SHIFT) as usize,
                prot,
            )
        };
        if rc != 0 {
            tracing::warn!(first, last, prot, "host mprotect of guest pages failed");
        }
    }

    /// Sets the permissions of `page` (under the layout lock) and returns the old ones,
    /// logging an invalidation if the page held code. Only a page with the code bit pays for
    /// an atomic swap: the code bit is the one part of the byte set outside the layout lock,
    /// and a decode racing with the change of a page's permissions only ever concerns a
    /// guest that must `fence.i` before running modified code anyway.
    pub(super) fn replace_perm(&self, page: u64, new: u8) -> u8 {
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

    pub(super) fn log_invalidation(&self, page_addr: u64) {
        let mut log = self.log.lock().ignore_poison();
        log.pages.push_back(page_addr);
        if log.pages.len() > INVALIDATION_LOG_CAPACITY {
            log.pages.pop_front();
            log.first += 1;
        }
        self.generation.store(log.first + log.pages.len() as u64, Ordering::Release);
    }

    /// Marks the pages holding `[addr, addr + len)` as holding decoded code; a writable one
    /// becomes read-only on the host, so that any store to it (translated code's included)
    /// takes the slow path that invalidates it.
    pub fn mark_code(&self, addr: u64, len: u64) {
        if len == 0 || addr >= self.size {
            return;
        }
        let last = ((addr + len - 1).min(self.size - 1)) >> PAGE_SHIFT;
        let first = addr >> PAGE_SHIFT;
        if (first..=last).all(|p| self.perm_at(p as usize) & PERM_CODE != 0) {
            return;
        }
        let _l = self.layout();
        for page in first..=last {
            let old = self.perm_cell(page as usize).fetch_or(PERM_CODE, Ordering::Relaxed);
            if old & (PERM_CODE | PERM_WRITE) == PERM_WRITE {
                self.set_host_prot(page, page + 1, host_prot(old | PERM_CODE));
                let mut list = self.writable_code.lock().ignore_poison();
                list.push(page);
                if list.len() >= 2 * self.writable_code_floor.load(Ordering::Relaxed).max(1024) {
                    // Drop the entries of pages that lost their code bit since (stores and
                    // layout changes clear it without touching this list).
                    list.retain(|&p| self.perm_at(p as usize) & PERM_CODE != 0);
                    list.sort_unstable();
                    list.dedup();
                    self.writable_code_floor.store(list.len(), Ordering::Relaxed);
                }
            }
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
        let log = self.log.lock().ignore_poison();
        let now = log.first + log.pages.len() as u64;
        if seen < log.first || seen > now {
            return (Invalidations::All, now);
        }
        let pages = log.pages.iter().skip((seen - log.first) as usize).copied().collect();
        (Invalidations::Pages(pages), now)
    }

    /// Treats every writable code page as stale (for `fence.i` and `riscv_flush_icache`).
    ///
    /// Every write the host makes on the guest's behalf to a code page takes the slow path
    /// that invalidates it, so the only stale code a `fence.i` can still expose is code
    /// decoded from a page while another thread was storing to it (the store passed its
    /// check before the page got its code bit). That needs a writable page; a page that
    /// becomes writable later loses its code bit then. So the cost is the number of
    /// writable code pages, never the size of the address space or of read-only text.
    pub fn invalidate_all_code(&self) {
        let pages = std::mem::take(&mut *self.writable_code.lock().ignore_poison());
        self.writable_code_floor.store(0, Ordering::Relaxed);
        for page in pages {
            if self.perm_at(page as usize) & PERM_CODE != 0 {
                self.uncode_page(page);
            }
        }
    }
}
