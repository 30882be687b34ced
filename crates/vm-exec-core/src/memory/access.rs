//! Guest data accesses: checked loads, stores, slices, atomics and strings.
//!
//! See the invariants in the parent module.

use super::*;

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
}
