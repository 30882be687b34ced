//! The layout: map, unmap, protect, file mappings, discard, brk, mremap and the free-range search.
//!
//! See the invariants in the parent module.

use super::*;

/// Heap and mmap bookkeeping (behind the layout lock).
pub(super) struct Layout {
    /// Start of the heap (page aligned), set by the loader.
    pub(super) brk_start: u64,
    /// Current program break (not necessarily page aligned).
    pub(super) brk: u64,
    /// Highest address (exclusive) the mmap allocator hands out.
    pub(super) mmap_top: u64,
    /// Lowest address the mmap allocator may hand out.
    pub(super) mmap_floor: u64,
}

impl AddressSpace {
    pub(super) fn page_range(&self, addr: u64, len: u64) -> Result<(u64, u64), MapError> {
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

    pub(super) fn map_fixed_locked(&self, addr: u64, len: u64, perms: u8) -> Result<(), MapError> {
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
                host_prot(perms),
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

    pub(super) fn unmap_locked(&self, addr: u64, len: u64) -> Result<(), MapError> {
        let (start, end) = self.page_range(addr, len)?;
        self.release(start, end)
    }

    /// Replaces `[start, end)` by fresh zero host pages with no host access and clears the
    /// permissions (a racing host access faults and is retried or reported, see the module
    /// docs).
    pub(super) fn release(&self, start: u64, end: u64) -> Result<(), MapError> {
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
        // pages, which belong to this address space alone, by fresh inaccessible zero pages;
        // a concurrent host access by another guest thread faults into the guarded routines.
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::PROT_NONE,
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
                self.uncode_page_locked(page);
            }
        }
        use std::os::fd::AsRawFd;
        // SAFETY: `[start, end)` lies inside our reservation and is mapped; MAP_FIXED replaces
        // only those pages, by a private (copy-on-write) mapping of the file, with the host
        // protection of the first page (then of each page, below, still under the lock).
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                host_prot(self.perm_at((start >> PAGE_SHIFT) as usize)),
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            tracing::warn!(start, end, "host mmap of a file failed while loading guest memory");
            return Err(MapError::Host);
        }
        self.sync_host_prot(start >> PAGE_SHIFT, end >> PAGE_SHIFT);
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
                self.uncode_page_locked(page);
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

    /// Writes `data` at `addr` whatever the guest's permissions of the (mapped) pages, for
    /// loaders building a fresh image: the pages are host-writable only for the copy, under
    /// the layout lock, and get their own protection back after it.
    pub fn write_initial(&self, addr: u64, data: &[u8]) -> Result<(), MemFault> {
        if data.is_empty() {
            return Ok(());
        }
        let fault = MemFault { addr, kind: AccessKind::Write };
        let end = addr.checked_add(data.len() as u64).filter(|&e| e <= self.size).ok_or(fault)?;
        let _l = self.layout();
        let (first, last) = (addr >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT);
        if let Some(p) = (first..=last).find(|&p| self.perm_at(p as usize) & PERM_MAPPED == 0) {
            return Err(MemFault { addr: (p << PAGE_SHIFT).max(addr), kind: AccessKind::Write });
        }
        for page in first..=last {
            self.uncode_page_locked(page);
        }
        self.set_host_prot(first, last + 1, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: `[addr, end)` is inside the reservation, mapped, and host-writable until
        // the protection is restored below; the layout lock keeps it so meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.as_ptr().add(addr as usize),
                data.len(),
            )
        };
        self.sync_host_prot(first, last + 1);
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
        self.set_host_prot(start >> PAGE_SHIFT, end >> PAGE_SHIFT, host_prot(perms));
        Ok(())
    }

    /// Gives pages `[first, last)` the host protection of their guest permissions, one
    /// `mprotect` per run of equal protection (under the layout lock).
    pub(super) fn sync_host_prot(&self, first: u64, last: u64) {
        let mut run = first;
        while run < last {
            let prot = host_prot(self.perm_at(run as usize));
            let mut end = run + 1;
            while end < last && host_prot(self.perm_at(end as usize)) == prot {
                end += 1;
            }
            self.set_host_prot(run, end, prot);
            run = end;
        }
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

    pub(super) fn find_free_locked(&self, l: &Layout, len: u64) -> Option<u64> {
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
    pub(super) fn chunk_count(&self, page: u64) -> u32 {
        self.chunk_mapped[(page / CHUNK_PAGES) as usize].load(Ordering::Relaxed)
    }

    /// The highest mapped page in `[first, end)`.
    pub(super) fn highest_mapped(&self, first: u64, end: u64) -> Option<u64> {
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
    pub(super) fn bottom_of_mapped_run(&self, mut page: u64) -> u64 {
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
        let (src_first, src_last) = (start >> PAGE_SHIFT, old_end >> PAGE_SHIFT);
        let (dst_first, dst_last) = (dest >> PAGE_SHIFT, (dest + new_len) >> PAGE_SHIFT);
        // The copy is the host's own: both sides readable/writable for it, under the lock.
        self.set_host_prot(src_first, src_last, libc::PROT_READ);
        self.set_host_prot(dst_first, dst_last, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: both ranges are inside the reservation, made host-readable (source) and
        // host-writable (destination) just above under the layout lock, and disjoint (dest
        // was free while the source is mapped); no guest access can change that meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start as usize),
                self.base.as_ptr().add(dest as usize),
                n,
            );
        }
        self.sync_host_prot(dst_first, dst_last);
        self.unmap_locked(start, old_end - start)?;
        Ok(dest)
    }
}
