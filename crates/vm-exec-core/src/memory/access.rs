//! Guest data accesses: checked loads, stores, slices, atomics and strings.
//!
//! See the invariants in the parent module.

use super::*;

/// How often an access that passed its check but faulted on the host (the layout changed
/// meanwhile) is checked and tried again before it is reported as a guest fault.
const RACE_RETRIES: u32 = 4;

impl AddressSpace {
    /// Checks that `len` bytes at `addr` are inside the space and every touched page has all
    /// of `need`'s bits. Returns the host pointer.
    #[inline(always)]
    pub(super) fn check(
        &self,
        addr: u64,
        len: u64,
        need: u8,
        kind: AccessKind,
    ) -> Result<*mut u8, MemFault> {
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
    pub(super) fn check_write(&self, addr: u64, len: u64) -> Result<*mut u8, MemFault> {
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

    /// Waits until no layout change is in progress (they all hold the layout lock), so that
    /// the permission table and the host protection agree for the next check.
    #[cold]
    fn wait_layout(&self) {
        drop(self.layout());
    }

    #[cold]
    pub(super) fn check_write_slow(&self, addr: u64, len: u64) -> Result<*mut u8, MemFault> {
        let ptr = self.check(addr, len, PERM_WRITE, AccessKind::Write)?;
        let first = addr >> PAGE_SHIFT;
        let last = (addr + len - 1) >> PAGE_SHIFT;
        for page in first..=last {
            self.uncode_page(page);
        }
        Ok(ptr)
    }

    /// Reads a little-endian value of `N` bytes (1, 2, 4 or 8).
    #[inline(always)]
    pub fn read<const N: usize>(&self, addr: u64) -> Result<[u8; N], MemFault> {
        let p = self.check(addr, N as u64, PERM_READ, AccessKind::Read)?;
        // SAFETY: `p` points into the reservation (checked); the handler is installed.
        match unsafe { fault::guarded_load::<N>(p) } {
            Some(v) => Ok(v),
            None => self.read_raced(addr),
        }
    }

    /// A load that passed its check but faulted on the host: the layout changed meanwhile.
    #[cold]
    fn read_raced<const N: usize>(&self, addr: u64) -> Result<[u8; N], MemFault> {
        for _ in 0..RACE_RETRIES {
            self.wait_layout();
            let p = self.check(addr, N as u64, PERM_READ, AccessKind::Read)?;
            // SAFETY: as in `read`.
            if let Some(v) = unsafe { fault::guarded_load::<N>(p) } {
                return Ok(v);
            }
        }
        Err(MemFault { addr, kind: AccessKind::Read })
    }

    /// Writes `N` bytes (1, 2, 4 or 8).
    #[inline(always)]
    pub fn write<const N: usize>(&self, addr: u64, v: [u8; N]) -> Result<(), MemFault> {
        let p = self.check_write(addr, N as u64)?;
        // SAFETY: `p` points into the reservation (checked); the handler is installed.
        if unsafe { fault::guarded_store::<N>(p, v) } {
            return Ok(());
        }
        self.write_raced(addr, v)
    }

    /// A store that passed its check but faulted on the host: the page was unmapped or
    /// protected meanwhile, or write-protected because it now holds code. The slow path
    /// makes a code page writable again (invalidating its code) before retrying.
    #[cold]
    fn write_raced<const N: usize>(&self, addr: u64, v: [u8; N]) -> Result<(), MemFault> {
        for _ in 0..RACE_RETRIES {
            self.wait_layout();
            let p = self.check_write_slow(addr, N as u64)?;
            // SAFETY: as in `write`.
            if unsafe { fault::guarded_store::<N>(p, v) } {
                return Ok(());
            }
        }
        Err(MemFault { addr, kind: AccessKind::Write })
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
        for attempt in 0..RACE_RETRIES {
            if attempt > 0 {
                self.wait_layout();
            }
            let p = self.check(addr, 2, PERM_EXEC, AccessKind::Execute)?;
            // SAFETY: `p` points into the reservation (checked); the handler is installed.
            if let Some(v) = unsafe { fault::guarded_load::<2>(p) } {
                return Ok(u16::from_le_bytes(v));
            }
        }
        Err(MemFault { addr, kind: AccessKind::Execute })
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
        self.read_into(addr, out, PERM_READ, AccessKind::Read)
    }

    /// Copies guest memory into `out`; every page must have `need` (a fault is of `kind`).
    pub fn read_into(
        &self,
        addr: u64,
        out: &mut [u8],
        need: u8,
        kind: AccessKind,
    ) -> Result<(), MemFault> {
        for attempt in 0..RACE_RETRIES {
            if attempt > 0 {
                self.wait_layout();
            }
            let src = self.slice(addr, out.len() as u64, need, kind)?;
            // SAFETY: `src` lies in the reservation (checked), `out` is ours and disjoint
            // from guest memory; the handler is installed.
            if unsafe { fault::guarded_copy(out.as_mut_ptr(), src.as_ptr(), out.len()) } {
                return Ok(());
            }
        }
        Err(MemFault { addr, kind })
    }

    /// Copies `data` into guest memory (needs write permission on every byte).
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemFault> {
        for attempt in 0..RACE_RETRIES {
            if attempt > 0 {
                self.wait_layout();
            }
            let dst = self.slice_mut(addr, data.len() as u64)?;
            // SAFETY: `dst` lies in the reservation (checked), `data` is host memory disjoint
            // from it; the handler is installed.
            if unsafe { fault::guarded_copy(dst.as_mut_ptr(), data.as_ptr(), data.len()) } {
                return Ok(());
            }
        }
        Err(MemFault { addr, kind: AccessKind::Write })
    }

    /// Borrows `len` guest bytes at `addr` for reading; every page must have `need`.
    ///
    /// Only for handing to a host system call (`write`, `pwrite`, `sendmsg`...): another
    /// guest thread may unmap or protect the range meanwhile, which the kernel reports as
    /// `EFAULT`. Host code that reads guest bytes itself uses [`Self::read_into`], which
    /// survives that race.
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
    /// holding code are logged for invalidation and made writable on the host).
    ///
    /// Only for handing to a host system call (`read`, `pread`, `recvmsg`...), as for
    /// [`Self::slice`]; host code writes through [`Self::write_bytes`].
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

    /// Atomically replaces the aligned 4-byte (`wide` false) or 8-byte word at `addr` by
    /// `f(old)` and returns `old` (zero-extended), or leaves it alone when `f` gives `None`.
    /// Needs read and write permission; `Ok(None)` if `addr` is misaligned. Sequentially
    /// consistent, like every host `lock` instruction.
    pub fn atomic_update(
        &self,
        addr: u64,
        wide: bool,
        f: impl Fn(u64) -> Option<u64>,
    ) -> Result<Option<u64>, MemFault> {
        let size = if wide { 8 } else { 4 };
        if addr % size != 0 {
            return Ok(None);
        }
        let mut faults = 0;
        loop {
            let p = self.check_write(addr, size)?;
            self.check(addr, size, PERM_READ, AccessKind::Read)?;
            let old = if wide {
                // SAFETY: `p` is aligned and inside the reservation (checked); the handler is
                // installed.
                unsafe { fault::guarded_load::<8>(p) }.map(u64::from_le_bytes)
            } else {
                // SAFETY: as above.
                unsafe { fault::guarded_load::<4>(p) }.map(|b| u32::from_le_bytes(b) as u64)
            };
            let mut cur = match old {
                Some(v) => v,
                None => {
                    faults += 1;
                    if faults > RACE_RETRIES {
                        return Err(MemFault { addr, kind: AccessKind::Write });
                    }
                    self.wait_layout();
                    continue;
                }
            };
            loop {
                let Some(new) = f(cur) else { return Ok(Some(cur)) };
                // SAFETY: as above.
                match unsafe { fault::guarded_cas(p, wide, cur, new) } {
                    Some(seen) if seen == cur => return Ok(Some(cur)),
                    Some(seen) => cur = seen,
                    None => break,
                }
            }
            faults += 1;
            if faults > RACE_RETRIES {
                return Err(MemFault { addr, kind: AccessKind::Write });
            }
            self.wait_layout();
            // A code page was write-protected under us: the slow path makes it writable.
            self.check_write_slow(addr, size)?;
        }
    }

    /// Atomically compares the aligned word at `addr` with `expected` and stores `new` if
    /// equal. Returns `Ok(Some(true))` if it stored, `Ok(None)` if misaligned. (RISC-V `sc`
    /// needs write permission even when it fails.)
    pub fn atomic_cas(
        &self,
        addr: u64,
        wide: bool,
        expected: u64,
        new: u64,
    ) -> Result<Option<bool>, MemFault> {
        Ok(self
            .atomic_update(addr, wide, |old| (old == expected).then_some(new))?
            .map(|old| old == expected))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, MemFault> {
        let mut out = Vec::new();
        let mut a = addr;
        let mut chunk = [0u8; PAGE_SIZE as usize];
        loop {
            if a >= self.size {
                return Err(MemFault { addr: a, kind: AccessKind::Read });
            }
            // Read page by page so long strings cost one check per page.
            let page_end = (a | (PAGE_SIZE - 1)) + 1;
            let chunk = &mut chunk[..(page_end - a) as usize];
            self.read_into(a, chunk, PERM_READ, AccessKind::Read)?;
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
}
