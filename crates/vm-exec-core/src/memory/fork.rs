//! Copying an address space for `fork`.

use super::{host_prot, AddressSpace, CHUNK_PAGES, PAGE_SHIFT, PAGE_SIZE, PERM_CODE, PERM_MAPPED};
use std::sync::atomic::Ordering;

impl AddressSpace {
    /// A copy of this address space for a forked process: same size, layout, permissions
    /// (without [`PERM_CODE`]: the copy has no decoded code yet) and bytes. Only mapped pages
    /// are committed in the copy, and a mapped page that holds only zeros is not written (it
    /// stays a fresh zero page), so untouched stack and heap cost nothing. The caller keeps
    /// the process's other threads from changing the layout meanwhile (a racing data store
    /// may or may not be seen, as with a fork racing a store on Linux).
    pub fn duplicate(&self) -> std::io::Result<AddressSpace> {
        let _compound = self.layout_lock();
        let l = self.layout();
        let copy = AddressSpace::new(self.size)?;
        {
            let mut cl = copy.layout();
            cl.brk_start = l.brk_start;
            cl.brk = l.brk;
            cl.mmap_top = l.mmap_top;
            cl.mmap_floor = l.mmap_floor;
        }
        let pages = self.pages as u64;
        let mut page = 0u64;
        while page < pages {
            let chunk = (page / CHUNK_PAGES) as usize;
            if self.chunk_mapped[chunk].load(Ordering::Relaxed) == 0 {
                page = (chunk as u64 + 1) * CHUNK_PAGES;
                continue;
            }
            let perms = self.perm_at(page as usize);
            if perms & PERM_MAPPED == 0 {
                page += 1;
                continue;
            }
            // A run of mapped pages with the same permissions.
            let mut end = page + 1;
            while end < pages && self.perm_at(end as usize) == perms {
                end += 1;
            }
            let (start, stop) = (page << PAGE_SHIFT, end << PAGE_SHIFT);
            copy.map_fixed_locked(start, stop - start, perms & !(PERM_CODE | PERM_MAPPED))
                .map_err(|e| std::io::Error::other(format!("fork: cannot map ({e:?})")))?;
            // Host protections follow the guest's (see `host_prot`): for the copy, the run is
            // made host-readable in the parent (a guest `PROT_NONE` run) and host-writable in
            // the child, and both get their own protections back after it. The layout lock
            // keeps every other change of these pages out meanwhile.
            let readable = host_prot(perms) & libc::PROT_READ != 0;
            if !readable {
                self.set_host_prot(page, end, libc::PROT_READ);
            }
            copy.set_host_prot(page, end, libc::PROT_READ | libc::PROT_WRITE);
            // Without swap, a page the host reports non-resident was never written: an
            // anonymous page not yet touched, or a hole of the image's memfd. It reads as
            // zero, so it need not be read at all (the copy's fresh page is zero too).
            let mut resident = vec![1u8; (end - page) as usize];
            if no_swap() {
                // SAFETY: the range lies inside our reservation and is mapped; `resident`
                // has one byte per page of it, as mincore requires.
                let rc = unsafe {
                    libc::mincore(
                        self.base.as_ptr().add(start as usize).cast(),
                        (stop - start) as usize,
                        resident.as_mut_ptr(),
                    )
                };
                if rc != 0 {
                    resident.fill(1);
                } else {
                    copy.prepare_dense(page, &resident);
                }
            }
            for p in page..end {
                if resident[(p - page) as usize] & 1 == 0 {
                    continue;
                }
                let off = (p << PAGE_SHIFT) as usize;
                // SAFETY: page `p` is mapped in both spaces, inside both reservations of
                // equal size, host-readable in the source and host-writable in the copy
                // (set above); the source is only read.
                unsafe {
                    let src =
                        std::slice::from_raw_parts(self.base.as_ptr().add(off), PAGE_SIZE as usize);
                    if src.iter().any(|&b| b != 0) {
                        std::ptr::copy_nonoverlapping(
                            src.as_ptr(),
                            copy.base.as_ptr().add(off),
                            PAGE_SIZE as usize,
                        );
                    }
                }
            }
            copy.sync_host_prot(page, end);
            if !readable {
                self.sync_host_prot(page, end);
            }
            page = end;
        }
        drop(l);
        Ok(copy)
    }
}

/// Pages in a host huge page (2 MiB).
const HUGE_PAGES: u64 = 512;

impl AddressSpace {
    /// Before a fork copies the run of pages starting at `first` whose source residency is
    /// `resident` (one byte per page, as `mincore` gives): every 2 MiB-aligned block of the
    /// run that is resident throughout is asked to be a host huge page in the copy
    /// (`MADV_HUGEPAGE`) and committed at once (`MADV_POPULATE_WRITE`), so that copying it
    /// takes one page fault instead of 512. Only fully resident blocks are, so the copy
    /// commits no more memory than the source has. Both calls are hints: a host that
    /// refuses them (no transparent huge pages, an older kernel) copies page by page.
    fn prepare_dense(&self, first: u64, resident: &[u8]) {
        let end = first + resident.len() as u64;
        let mut block = first.next_multiple_of(HUGE_PAGES);
        let mut run: Option<(u64, u64)> = None;
        let flush = |run: &mut Option<(u64, u64)>| {
            if let Some((a, b)) = run.take() {
                let off = (a << PAGE_SHIFT) as usize;
                let len = ((b - a) << PAGE_SHIFT) as usize;
                // SAFETY: `[a, b)` lies inside this space's reservation and is mapped
                // read-write in the copy (the caller's run); madvise only changes how the
                // host backs those pages, not their contents (they are fresh zero pages).
                unsafe {
                    let at = self.base.as_ptr().add(off).cast();
                    libc::madvise(at, len, libc::MADV_HUGEPAGE);
                    libc::madvise(at, len, MADV_POPULATE_WRITE);
                }
            }
        };
        while block + HUGE_PAGES <= end {
            let lo = (block - first) as usize;
            let dense = resident[lo..lo + HUGE_PAGES as usize].iter().all(|&r| r & 1 != 0);
            if dense {
                run =
                    Some(run.map_or((block, block + HUGE_PAGES), |(a, _)| (a, block + HUGE_PAGES)));
            } else {
                flush(&mut run);
            }
            block += HUGE_PAGES;
        }
        flush(&mut run);
    }
}

/// `MADV_POPULATE_WRITE` (Linux 5.14), not in every libc crate version.
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// Whether the host has no swap space (read once from `/proc/meminfo`): then a mapped page
/// that is not resident has never been written.
fn no_swap() -> bool {
    static NO_SWAP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO_SWAP.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo").is_ok_and(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("SwapTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .is_some_and(|v| v == "0")
        })
    })
}
