//! The library's SIGSEGV handler coexists with the host program's own: a fault that is not
//! at a guest access goes to the handler installed before ours (here one that makes the
//! page accessible and lets the access run again, as a garbage collector's write barrier
//! would), while guest accesses keep turning host faults into guest faults.
//!
//! One test per binary: signal dispositions are process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use vm_exec_core::memory::{AccessKind, AddressSpace, MemFault, PERM_READ, PERM_WRITE};

static HOST_FAULTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn host_handler(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: a valid siginfo for an SA_SIGINFO handler; mprotect is async-signal-safe and
    // the page is the test's own mapping.
    unsafe {
        let page = ((*info).si_addr() as usize) & !4095;
        libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE);
    }
    HOST_FAULTS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn faults_outside_guest_accesses_reach_the_host_handler() {
    // SAFETY: installing a handler for this test process; the handler only calls mprotect.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = host_handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &act, std::ptr::null_mut()), 0);
    }
    // Making an address space installs the library's handler on top of the host's.
    let m = AddressSpace::new(1 << 20).unwrap();
    m.map_fixed(0x1000, 0x1000, PERM_READ | PERM_WRITE).unwrap();
    m.write_u64(0x1000, 7).unwrap();
    // A host page of the program's own, inaccessible: its fault is not ours to claim.
    // SAFETY: a fresh private mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as *mut u64;
    assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
    // SAFETY: `p` is our mapping; the host handler makes it writable on the first fault.
    unsafe { std::ptr::write_volatile(p, 42) };
    assert_eq!(HOST_FAULTS.load(Ordering::SeqCst), 1, "the host handler ran once");
    // SAFETY: now readable.
    assert_eq!(unsafe { std::ptr::read_volatile(p) }, 42);
    // Guest accesses are still the library's: a guest fault, the host handler not called.
    m.unmap(0x1000, 0x1000).unwrap();
    assert_eq!(m.read_u64(0x1000), Err(MemFault { addr: 0x1000, kind: AccessKind::Read }));
    m.map_fixed(0x2000, 0x1000, PERM_READ).unwrap();
    assert_eq!(m.write_u8(0x2000, 1), Err(MemFault { addr: 0x2000, kind: AccessKind::Write }));
    assert_eq!(HOST_FAULTS.load(Ordering::SeqCst), 1);
}
