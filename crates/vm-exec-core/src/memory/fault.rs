//! Host faults at guest accesses: the process-wide SIGSEGV/SIGBUS handler, the guarded
//! access routines the host uses for guest memory, and the fault sites of translated code.
//!
//! Every guest page has its real protection on the host (see the parent module), so an
//! access the guest may not make faults on the host. Two kinds of code touch guest memory:
//! - Host code (interpreter, system calls, helpers) checks the permission byte first, then
//!   goes through the guarded routines below (`vmx_exec_core_guest_*`, a few instructions of
//!   assembly each). Between the check and the access another guest thread may unmap or
//!   protect the page, or an engine may write-protect it because it now holds code; the
//!   access then faults, the handler sends it to the routines' common fault exit, and the
//!   caller sees a failed access, checks again and either retries or reports the guest
//!   fault. The host itself never crashes.
//! - Translated code accesses guest memory with one bound check and a plain `mov`; each such
//!   instruction is a *fault site* with an out-of-line slow path. An engine announces the
//!   sites of the code it is about to run with [`JitFaultScope::enter`]; a fault at a site
//!   whose address lies in the scope's guest reservation resumes at the site's slow path,
//!   which redoes the access through the checked path and raises the exact guest signal
//!   (pc, fault address), or, for a store into a write-protected code page, performs it,
//!   invalidates the page and leaves for the dispatcher.
//!
//! What the library installs (it is embeddable): one `sigaction` for SIGSEGV and one for
//! SIGBUS, with `SA_SIGINFO | SA_ONSTACK`, the first time an [`super::AddressSpace`] is
//! made (or [`install_fault_handler`] is called). The handler claims only faults whose
//! instruction is a guarded routine, or a fault site of the current thread's scope with the
//! fault address inside that scope's guest reservation. Every other fault goes to the
//! handler that was installed before ours (called with the same arguments); if there was
//! none (or it was `SIG_IGN`), the default action is restored and the faulting instruction
//! runs again, so the process dies of the signal as it would have without us. A host
//! program that installs its own handler after ours should chain to ours the same way.
//!
//! The handler is async-signal-safe: it reads a `const`-initialized thread-local and a
//! table that the thread itself owns and does not change while its code runs, and writes
//! only the interrupted context.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

std::arch::global_asm!(
    r#"
    .text
    .p2align 4
    .globl vmx_exec_core_guest_start
    .hidden vmx_exec_core_guest_start
vmx_exec_core_guest_start:
    .globl vmx_exec_core_guest_load8
    .hidden vmx_exec_core_guest_load8
vmx_exec_core_guest_load8:
    xor edx, edx
    movzx eax, byte ptr [rdi]
    ret
    .globl vmx_exec_core_guest_load16
    .hidden vmx_exec_core_guest_load16
vmx_exec_core_guest_load16:
    xor edx, edx
    movzx eax, word ptr [rdi]
    ret
    .globl vmx_exec_core_guest_load32
    .hidden vmx_exec_core_guest_load32
vmx_exec_core_guest_load32:
    xor edx, edx
    mov eax, dword ptr [rdi]
    ret
    .globl vmx_exec_core_guest_load64
    .hidden vmx_exec_core_guest_load64
vmx_exec_core_guest_load64:
    xor edx, edx
    mov rax, qword ptr [rdi]
    ret
    .globl vmx_exec_core_guest_store8
    .hidden vmx_exec_core_guest_store8
vmx_exec_core_guest_store8:
    xor eax, eax
    mov byte ptr [rdi], sil
    ret
    .globl vmx_exec_core_guest_store16
    .hidden vmx_exec_core_guest_store16
vmx_exec_core_guest_store16:
    xor eax, eax
    mov word ptr [rdi], si
    ret
    .globl vmx_exec_core_guest_store32
    .hidden vmx_exec_core_guest_store32
vmx_exec_core_guest_store32:
    xor eax, eax
    mov dword ptr [rdi], esi
    ret
    .globl vmx_exec_core_guest_store64
    .hidden vmx_exec_core_guest_store64
vmx_exec_core_guest_store64:
    xor eax, eax
    mov qword ptr [rdi], rsi
    ret
    .globl vmx_exec_core_guest_copy
    .hidden vmx_exec_core_guest_copy
vmx_exec_core_guest_copy:
    mov rcx, rdx
    rep movsb
    xor eax, eax
    ret
    .globl vmx_exec_core_guest_cas32
    .hidden vmx_exec_core_guest_cas32
vmx_exec_core_guest_cas32:
    mov eax, esi
    lock cmpxchg dword ptr [rdi], edx
    mov edx, 0
    ret
    .globl vmx_exec_core_guest_cas64
    .hidden vmx_exec_core_guest_cas64
vmx_exec_core_guest_cas64:
    mov rax, rsi
    lock cmpxchg qword ptr [rdi], rdx
    mov edx, 0
    ret
    .globl vmx_exec_core_guest_end
    .hidden vmx_exec_core_guest_end
vmx_exec_core_guest_end:
    .globl vmx_exec_core_guest_fault
    .hidden vmx_exec_core_guest_fault
vmx_exec_core_guest_fault:
    mov eax, 1
    mov edx, 1
    ret
"#
);

/// A value and a status returned in `rax` and `rdx`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Loaded {
    value: u64,
    faulted: u64,
}

extern "sysv64" {
    fn vmx_exec_core_guest_start();
    fn vmx_exec_core_guest_end();
    fn vmx_exec_core_guest_fault();
    fn vmx_exec_core_guest_load8(p: *const u8) -> Loaded;
    fn vmx_exec_core_guest_load16(p: *const u8) -> Loaded;
    fn vmx_exec_core_guest_load32(p: *const u8) -> Loaded;
    fn vmx_exec_core_guest_load64(p: *const u8) -> Loaded;
    fn vmx_exec_core_guest_store8(p: *mut u8, v: u64) -> u64;
    fn vmx_exec_core_guest_store16(p: *mut u8, v: u64) -> u64;
    fn vmx_exec_core_guest_store32(p: *mut u8, v: u64) -> u64;
    fn vmx_exec_core_guest_store64(p: *mut u8, v: u64) -> u64;
    fn vmx_exec_core_guest_copy(dst: *mut u8, src: *const u8, n: usize) -> u64;
    fn vmx_exec_core_guest_cas32(p: *mut u8, expected: u64, new: u64) -> Loaded;
    fn vmx_exec_core_guest_cas64(p: *mut u8, expected: u64, new: u64) -> Loaded;
}

/// Loads `N` (1, 2, 4 or 8) little-endian bytes at `p`; `None` if the host faulted.
///
/// # Safety
/// `p` must point into a guest reservation (so a fault there is claimed by the handler,
/// which [`install_fault_handler`] installed).
#[inline(always)]
pub(crate) unsafe fn guarded_load<const N: usize>(p: *const u8) -> Option<[u8; N]> {
    // SAFETY: the routines only read `N` bytes at `p`; a host fault there resumes at the
    // common fault exit (handler installed, per the caller's contract).
    let r = unsafe {
        match N {
            1 => vmx_exec_core_guest_load8(p),
            2 => vmx_exec_core_guest_load16(p),
            4 => vmx_exec_core_guest_load32(p),
            _ => vmx_exec_core_guest_load64(p),
        }
    };
    if r.faulted != 0 {
        return None;
    }
    let bytes = r.value.to_le_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    Some(out)
}

/// Stores `N` (1, 2, 4 or 8) bytes at `p`; false if the host faulted (nothing was written).
///
/// # Safety
/// As for [`guarded_load`].
#[inline(always)]
pub(crate) unsafe fn guarded_store<const N: usize>(p: *mut u8, v: [u8; N]) -> bool {
    let mut b = [0u8; 8];
    b[..N].copy_from_slice(&v);
    let v = u64::from_le_bytes(b);
    // SAFETY: as in `guarded_load`; the routines write exactly `N` bytes at `p`.
    let faulted = unsafe {
        match N {
            1 => vmx_exec_core_guest_store8(p, v),
            2 => vmx_exec_core_guest_store16(p, v),
            4 => vmx_exec_core_guest_store32(p, v),
            _ => vmx_exec_core_guest_store64(p, v),
        }
    };
    faulted == 0
}

/// Copies `n` bytes from `src` to `dst`, one of which is guest memory and the other host
/// memory the caller owns; false if the host faulted (a prefix may have been copied).
///
/// # Safety
/// The guest side must lie in a guest reservation, the host side must be valid for `n`
/// bytes, and the two must not overlap.
pub(crate) unsafe fn guarded_copy(dst: *mut u8, src: *const u8, n: usize) -> bool {
    // SAFETY: guaranteed by the caller; a fault on the guest side resumes at the fault exit.
    unsafe { vmx_exec_core_guest_copy(dst, src, n) == 0 }
}

/// Atomically compares the aligned 4- or 8-byte word at `p` with `expected` and replaces it
/// by `new` if equal (sequentially consistent). Returns the old value, `None` if the host
/// faulted.
///
/// # Safety
/// As for [`guarded_load`]; `p` is aligned to the word size.
pub(crate) unsafe fn guarded_cas(p: *mut u8, wide: bool, expected: u64, new: u64) -> Option<u64> {
    // SAFETY: as in `guarded_load`; `lock cmpxchg` on an aligned word inside the reservation.
    let r = unsafe {
        if wide {
            vmx_exec_core_guest_cas64(p, expected, new)
        } else {
            vmx_exec_core_guest_cas32(p, expected, new)
        }
    };
    (r.faulted == 0).then_some(if wide { r.value } else { r.value & 0xffff_ffff })
}

/// The fault sites of the translated code a thread is running (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct JitFaultScope {
    /// Host address range of the code buffer.
    pub code: (usize, usize),
    /// Host address range of the guest reservation (both guard regions included).
    pub mem: (usize, usize),
    /// `(site, slow path)` offsets from `code.0`, sorted by site; `len` entries.
    pub sites: *const (u32, u32),
    /// Number of entries of `sites`.
    pub len: usize,
}

thread_local! {
    static SCOPE: Cell<Option<JitFaultScope>> = const { Cell::new(None) };
}

/// Restores the previous scope when dropped.
pub struct ScopeGuard(Option<JitFaultScope>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPE.with(|s| s.set(self.0));
    }
}

impl JitFaultScope {
    /// Makes `self` the current thread's scope until the guard is dropped.
    ///
    /// # Safety
    /// `sites` must stay valid and unchanged, and sorted, until the guard is dropped, and
    /// every listed site must be an instruction whose fault is correctly handled by resuming
    /// at its slow path with the interrupted registers.
    pub unsafe fn enter(self) -> ScopeGuard {
        install_fault_handler();
        ScopeGuard(SCOPE.with(|s| s.replace(Some(self))))
    }

    /// The host address to resume at for a fault at `rip`, if it is a site.
    fn resume_at(&self, rip: usize) -> Option<usize> {
        if rip < self.code.0 || rip >= self.code.1 || self.len == 0 {
            return None;
        }
        let off = u32::try_from(rip - self.code.0).ok()?;
        // SAFETY: `enter`'s contract keeps the table valid and unchanged while this scope is
        // current; the handler runs on the thread that set it.
        let sites = unsafe { std::slice::from_raw_parts(self.sites, self.len) };
        let i = sites.binary_search_by_key(&off, |&(s, _)| s).ok()?;
        Some(self.code.0 + sites[i].1 as usize)
    }
}

/// The actions that were installed before ours (SIGSEGV, SIGBUS), for chaining; written
/// once before [`INSTALLED`] is set.
static mut PREVIOUS_RAW: [std::mem::MaybeUninit<libc::sigaction>; 2] =
    [std::mem::MaybeUninit::uninit(), std::mem::MaybeUninit::uninit()];
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the SIGSEGV/SIGBUS handler (once per process; see the module docs for what it
/// claims and how it chains).
pub fn install_fault_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut prev: [libc::sigaction; 2] =
            // SAFETY: `sigaction` is plain data; all-zero is a valid (empty) value.
            unsafe { std::mem::zeroed() };
        for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
            // SAFETY: as above.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = handler as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `act.sa_mask` is a valid sigset to clear; installing a handler that
            // is async-signal-safe (see module docs) and saving the old action.
            unsafe {
                libc::sigemptyset(&mut act.sa_mask);
                // The previous action is recorded before ours can run: it is written to
                // PREVIOUS_RAW below, and ours only chains once INSTALLED is set.
                libc::sigaction(sig, &act, &mut prev[i]);
            }
        }
        // SAFETY: written once, here, before INSTALLED is published; the handler reads it
        // only after seeing INSTALLED.
        unsafe {
            let raw = &mut *std::ptr::addr_of_mut!(PREVIOUS_RAW);
            raw[0].write(prev[0]);
            raw[1].write(prev[1]);
        }
        INSTALLED.store(true, Ordering::Release);
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for an SA_SIGINFO handler.
    let uc = unsafe { &mut *(ctx as *mut libc::ucontext_t) };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    // SAFETY: `info` is valid for an SA_SIGINFO handler; si_addr is the fault address for
    // SIGSEGV/SIGBUS raised by an access.
    let addr = unsafe { (*info).si_addr() } as usize;
    let start = vmx_exec_core_guest_start as *const () as usize;
    let end = vmx_exec_core_guest_end as *const () as usize;
    // SAFETY: reading si_code of a valid siginfo.
    let from_kernel = unsafe { (*info).si_code } > 0;
    if from_kernel && (start..end).contains(&rip) {
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] =
            vmx_exec_core_guest_fault as *const () as usize as i64;
        return;
    }
    if from_kernel {
        let scope = SCOPE.try_with(|s| s.get()).ok().flatten();
        if let Some(scope) = scope {
            if (scope.mem.0..scope.mem.1).contains(&addr) {
                if let Some(to) = scope.resume_at(rip) {
                    uc.uc_mcontext.gregs[libc::REG_RIP as usize] = to as i64;
                    return;
                }
            }
        }
    }
    chain(sig, info, ctx);
}

fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = usize::from(sig == libc::SIGBUS);
    if !INSTALLED.load(Ordering::Acquire) {
        restore_default(sig);
        return;
    }
    // SAFETY: initialized before INSTALLED was published, never written again.
    let prev = unsafe { (*std::ptr::addr_of!(PREVIOUS_RAW))[i].assume_init() };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // The faulting instruction runs again and the default action ends the process.
        restore_default(sig);
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this type.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

fn restore_default(sig: libc::c_int) {
    // SAFETY: resetting a signal's action to SIG_DFL is async-signal-safe.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}
