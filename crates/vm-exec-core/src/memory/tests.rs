//! Unit tests of the address space.

use super::code::INVALIDATION_LOG_CAPACITY;
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
    // One thread maps, writes and unmaps a page in a loop while another reads it: an access
    // that passed its check and then met the unmapped (host `PROT_NONE`) page is retried or
    // reported as the guest fault; the host never crashes.
    let m = std::sync::Arc::new(AddressSpace::new(1 << 20).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut seen, mut faults) = (0u64, 0u64);
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match m.read_into(0x4000, &mut buf, PERM_READ, AccessKind::Read) {
                    Ok(()) => seen += buf.iter().map(|&b| b as u64).sum::<u64>(),
                    Err(f) => {
                        assert_eq!(f.addr, 0x4000);
                        faults += 1;
                    }
                }
                if let Err(f) = m.read_u32(0x4ffc) {
                    assert_eq!(f, MemFault { addr: 0x4ffc, kind: AccessKind::Read });
                }
            }
            (seen, faults)
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
    assert_eq!(m.atomic_update(0x4004, false, |x| Some(x + 5)), Ok(Some(0)));
    assert_eq!(m.read_u32(0x4004).unwrap(), 5);
    assert_eq!(m.atomic_cas(0x4008, true, 0, 9), Ok(Some(true)));
    assert_eq!(m.atomic_cas(0x4008, true, 0, 7), Ok(Some(false)));
    assert_eq!(m.read_u64(0x4008).unwrap(), 9);
    assert_eq!(m.atomic_update(0x4006, false, Some), Ok(None), "misaligned");
    assert!(m.atomic_update(0x5000, true, Some).is_err(), "unmapped");
    m.protect(0x4000, 0x1000, PERM_READ).unwrap();
    assert!(m.atomic_update(0x4008, true, Some).is_err(), "read-only");
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

#[test]
fn invalidate_all_code_drops_writable_code_pages_only() {
    let m = AddressSpace::new(1 << 24).unwrap();
    m.map_fixed(0x4000, 0x1000, PERM_READ | PERM_EXEC).unwrap();
    m.map_fixed(0x8000, 0x2000, RW | PERM_EXEC).unwrap();
    m.mark_code(0x4000, 4);
    m.mark_code(0x8000, 0x2000);
    m.mark_code(0x8000, 4); // already marked: listed once
    let g = m.code_generation();
    m.invalidate_all_code();
    assert_eq!(m.invalidations_since(g).0, Invalidations::Pages(vec![0x8000, 0x9000]));
    assert_ne!(m.page_perms(0x4000) & PERM_CODE, 0, "read-only text keeps its code");
    // A second fence finds nothing left to drop.
    let g = m.code_generation();
    m.invalidate_all_code();
    assert_eq!(m.code_generation(), g);
    // A page recoded after a store is listed again.
    m.write_u8(0x9000, 1).unwrap();
    m.mark_code(0x9000, 4);
    let g = m.code_generation();
    m.invalidate_all_code();
    assert_eq!(m.invalidations_since(g).0, Invalidations::Pages(vec![0x9000]));
}

#[test]
fn the_writable_code_list_stays_bounded_without_fences() {
    let m = AddressSpace::new(1 << 24).unwrap();
    m.map_fixed(0x8000, 0x1000, RW | PERM_EXEC).unwrap();
    for _ in 0..100_000 {
        m.mark_code(0x8000, 4);
        m.write_u8(0x8000, 1).unwrap();
    }
    assert!(m.writable_code.lock().unwrap().len() < 4096);
}

#[test]
fn duplicate_copies_bytes_permissions_and_layout_but_not_code_bits() {
    let m = AddressSpace::new(64 << 20).unwrap();
    m.map_fixed(0x10000, 3 * PAGE_SIZE, PERM_READ | PERM_EXEC).unwrap();
    m.map_fixed(0x20000, 2 * PAGE_SIZE, PERM_READ | PERM_WRITE).unwrap();
    m.write_u64(0x20008, 0x1122_3344_5566_7788).unwrap();
    m.mark_code(0x10000, 4);
    m.init_brk(0x40000);
    m.set_brk(0x42000);
    let c = m.duplicate().unwrap();
    assert_eq!(c.read_u64(0x20008).unwrap(), 0x1122_3344_5566_7788);
    assert_eq!(c.read_u64(0x21000).unwrap(), 0, "a zero page stays zero");
    assert_eq!(c.page_perms(0x10000), PERM_READ | PERM_EXEC | PERM_MAPPED);
    assert_eq!(c.page_perms(0x30000), 0);
    assert_eq!(c.brk(), 0x42000);
    assert!(c.write_u64(0x10000, 1).is_err(), "read-only stays read-only");
    // The copy is independent.
    c.write_u64(0x20008, 1).unwrap();
    assert_eq!(m.read_u64(0x20008).unwrap(), 0x1122_3344_5566_7788);
    assert!(!c.is_free(0x40000, 0x42000), "the heap is mapped in the copy");
}

#[test]
fn duplicate_copies_a_densely_written_region_and_a_partly_written_one() {
    // 6 MiB written on every page (whole 2 MiB blocks: the copy may take host huge pages for
    // them), then a 3 MiB run written on every other page, and a read-only dense run.
    let m = AddressSpace::new(64 << 20).unwrap();
    let (dense, sparse, ro) = (0x20_0000u64, 0xa0_0000u64, 0x100_0000u64);
    m.map_fixed(dense, 6 << 20, PERM_READ | PERM_WRITE).unwrap();
    m.map_fixed(sparse, 3 << 20, PERM_READ | PERM_WRITE).unwrap();
    m.map_fixed(ro, 4 << 20, PERM_READ | PERM_WRITE).unwrap();
    for p in (dense..dense + (6 << 20)).step_by(PAGE_SIZE as usize) {
        m.write_u64(p + 8, p ^ 0x5a5a).unwrap();
    }
    for p in (sparse..sparse + (3 << 20)).step_by(2 * PAGE_SIZE as usize) {
        m.write_u64(p, p | 1).unwrap();
    }
    for p in (ro..ro + (4 << 20)).step_by(PAGE_SIZE as usize) {
        m.write_u64(p, !p).unwrap();
    }
    m.protect(ro, 4 << 20, PERM_READ).unwrap();
    let c = m.duplicate().unwrap();
    for p in (dense..dense + (6 << 20)).step_by(PAGE_SIZE as usize) {
        assert_eq!(c.read_u64(p + 8).unwrap(), p ^ 0x5a5a, "dense page {p:#x}");
        assert_eq!(c.read_u64(p).unwrap(), 0);
    }
    for p in (sparse..sparse + (3 << 20)).step_by(PAGE_SIZE as usize) {
        let want = if (p - sparse) % (2 * PAGE_SIZE) == 0 { p | 1 } else { 0 };
        assert_eq!(c.read_u64(p).unwrap(), want, "sparse page {p:#x}");
    }
    for p in (ro..ro + (4 << 20)).step_by(PAGE_SIZE as usize) {
        assert_eq!(c.read_u64(p).unwrap(), !p, "read-only page {p:#x}");
    }
    assert!(c.write_u64(ro, 1).is_err(), "read-only stays read-only");
    // Independent both ways, also inside a block the copy may hold as one host page.
    c.write_u64(dense + 0x1000, 7).unwrap();
    m.write_u64(dense + 0x2000, 9).unwrap();
    assert_eq!(m.read_u64(dense + 0x1000).unwrap(), 0);
    assert_eq!(c.read_u64(dense + 0x2000).unwrap(), 0);
    // Unmapping and protecting part of such a block in the copy works page-wise.
    c.unmap(dense + 0x3000, PAGE_SIZE).unwrap();
    assert!(c.read_u64(dense + 0x3000).is_err());
    assert_eq!(c.read_u64(dense + 0x4008).unwrap(), (dense + 0x4000) ^ 0x5a5a);
}
