//! Exits and stubs: the entry trampoline and common exit, direct exit sites, signal and
//! fuel stubs, helper calls and the out-of-line slow paths (see the parent module).

use super::*;

/// Emits the entry trampoline and the common exit, returning the offsets of both.
///
/// The entry is `extern "sysv64" fn(ctx: *mut JitContext, code: *const u8) -> u32`: it saves
/// the callee-saved registers, loads the pinned registers from the context and jumps to
/// `code`; the exit (global label `exit`, reached with the exit code in `eax`) spills the
/// fuel and returns to the dispatcher.
pub(crate) fn emit_trampoline(ops: &mut Asm) -> (usize, usize) {
    let entry = ops.offset().0;
    dynasm!(ops
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; sub rsp, 8
        // The caller's MXCSR is kept in the alignment slot; translated code runs with the
        // default environment (round to nearest even, all exceptions masked, no
        // flush-to-zero), which the inline floating-point fast paths rely on.
        ; stmxcsr DWORD [rsp]
        ; mov DWORD [rsp + 4], 0x1f80
        ; ldmxcsr DWORD [rsp + 4]
        ; mov r15, rdi
        ; mov r14, QWORD [r15 + MEM_BASE_OFF]
        ; mov r12, QWORD [r15 + FUEL_OFF]
    );
    load_globals(ops);
    dynasm!(ops
        ; .arch x64
        ; jmp rsi
    );
    let exit = ops.offset().0;
    store_globals(ops);
    dynasm!(ops
        ; .arch x64
        ; mov QWORD [r15 + FUEL_OFF], r12
        ; ldmxcsr DWORD [rsp]
        ; add rsp, 8
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );
    (entry, exit)
}

impl Emitter<'_> {
    /// Sets the guest pc field to `v` (clobbers `rax`).
    pub(super) fn set_pc(&mut self, v: u64) {
        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD v as i64 ; mov QWORD [r15 + PC_OFF], rax);
    }

    pub(super) fn label(&mut self) -> DynamicLabel {
        self.ops.new_dynamic_label()
    }

    /// A label that raises the signal recorded by a helper at instruction `idx`.
    pub(super) fn fault_label(&mut self, idx: u32, ipc: u64) -> DynamicLabel {
        let label = self.label();
        self.stubs.push(Stub::Signal { label, pc: ipc, refund: self.n - idx, fixed: None });
        label
    }

    /// A label that leaves for the dispatcher after instruction `idx` retired.
    pub(super) fn next_label(&mut self, idx: u32, next_pc: u64) -> DynamicLabel {
        let label = self.label();
        self.stubs.push(Stub::Next { label, pc: next_pc, refund: self.n - idx - 1 });
        label
    }

    /// Jumps to a stub that raises `signo` at `pc`, refunding `refund` instructions.
    pub(super) fn signal_now(&mut self, pc: u64, refund: u32, signo: i32, addr: Option<u64>) {
        let label = self.label();
        self.stubs.push(Stub::Signal { label, pc, refund, fixed: Some((signo, addr)) });
        dynasm!(self.ops ; .arch x64 ; jmp =>label);
    }

    /// Emits a chainable direct exit to `target`.
    pub(super) fn direct_exit(&mut self, target: u64) {
        if target == self.pc && self.n > 0 && self.opts.chaining {
            // A loop that is one block: charge the next round and go straight back to the
            // body, keeping the cached registers in place.
            let label = self.label();
            let body = self.body;
            if self.opts.count_blocks {
                dynasm!(self.ops
                    ; .arch x64
                    ; sub r12, self.n as i32
                    ; jl =>label
                    ; add QWORD [r15 + BLOCK_EXECS_OFF], 1
                    ; jmp =>body
                );
            } else {
                dynasm!(self.ops
                    ; .arch x64
                    ; sub r12, self.n as i32
                    ; jge =>body
                    ; jmp =>label
                );
            }
            self.stubs.push(Stub::LoopFuel { label });
            return;
        }
        self.spill();
        let label = self.label();
        let jmp = self.ops.offset().0;
        // A jump to a dynamic label is always encoded `E9 rel32`; chaining patches the rel32.
        dynasm!(self.ops ; .arch x64 ; jmp =>label);
        let index = self.sites.len();
        self.sites.push(SiteSpec { jmp, stub: 0, target });
        self.stubs.push(Stub::Site { label, index });
    }

    /// Calls `f` (an `extern "C"` helper); arguments must already be in place.
    pub(super) fn call(&mut self, f: usize) {
        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD f as i64 ; call rax);
    }

    /// Calls a helper that returns a status in `rax`, with `rdi = ctx` and `rsi = inst`;
    /// handles `STATUS_SIGNAL` and, when `may_store`, `STORE_INVALIDATED`.
    pub(super) fn status_call(&mut self, f: usize, i: &Inst, idx: u32, ipc: u64, may_store: bool) {
        let fault = self.fault_label(idx, ipc);
        let touches_x = i.op.fp_reads_int_rs1() || i.op.writes_int_rd();
        if touches_x {
            self.spill_for_helper();
        } else {
            self.push_volatile();
        }
        dynasm!(self.ops
            ; .arch x64
            ; mov rdi, r15
            ; mov rsi, QWORD i as *const Inst as i64
        );
        self.call(f);
        if touches_x {
            self.reload_after_helper();
        } else {
            self.pop_volatile();
        }
        if may_store {
            let next = self.next_label(idx, ipc.wrapping_add(i.len as u64));
            dynasm!(self.ops
                ; .arch x64
                ; cmp eax, STATUS_SIGNAL as i32
                ; je =>fault
                ; ja =>next
            );
        } else {
            dynasm!(self.ops ; .arch x64 ; test eax, eax ; jnz =>fault);
        }
    }

    /// In a memory slow path, after the caller-saved cache registers were saved: the guest
    /// address of the access into `rsi` (the helper's second argument), from the base
    /// register, which still holds what it held at the fault site.
    fn slow_addr(&mut self, a: memory::Addr) {
        dynasm!(self.ops ; .arch x64 ; lea rsi, [Rq(a.base) + a.disp]);
    }

    pub(super) fn emit_stubs(&mut self) {
        let stubs = std::mem::take(&mut self.stubs);
        for stub in stubs {
            match stub {
                Stub::Fuel { label } => {
                    dynasm!(self.ops ; .arch x64 ; =>label);
                    if self.n > 0 {
                        dynasm!(self.ops ; .arch x64 ; add r12, self.n as i32);
                    }
                    self.set_pc(self.pc);
                    dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_FUEL as i32 ; jmp extern self.exit);
                }
                Stub::LoopFuel { label } => {
                    dynasm!(self.ops ; .arch x64 ; =>label ; add r12, self.n as i32);
                    self.spill();
                    self.set_pc(self.pc);
                    dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_FUEL as i32 ; jmp extern self.exit);
                }
                Stub::Site { label, index } => {
                    self.sites[index].stub = self.ops.offset().0;
                    dynasm!(self.ops ; .arch x64 ; =>label);
                    let target = self.sites[index].target;
                    self.set_pc(target);
                    let id = self.first_site + index as u32;
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov DWORD [r15 + EXIT_SITE_OFF], id as i32
                        ; mov eax, EXIT_BRANCH as i32
                        ; jmp extern self.exit
                    );
                }
                Stub::Signal { label, pc, refund, fixed } => {
                    dynasm!(self.ops ; .arch x64 ; =>label);
                    self.spill();
                    if let Some((signo, addr)) = fixed {
                        dynasm!(self.ops
                            ; .arch x64
                            ; mov DWORD [r15 + SIG_SIGNO_OFF], signo
                            ; mov rax, QWORD addr.unwrap_or(0) as i64
                            ; mov QWORD [r15 + SIG_ADDR_OFF], rax
                            ; mov QWORD [r15 + SIG_HAS_ADDR_OFF], addr.is_some() as i32
                        );
                    }
                    if refund > 0 {
                        dynasm!(self.ops ; .arch x64 ; add r12, refund as i32);
                    }
                    self.set_pc(pc);
                    dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_SIGNAL as i32 ; jmp extern self.exit);
                }
                Stub::Next { label, pc, refund } => {
                    dynasm!(self.ops ; .arch x64 ; =>label);
                    self.spill();
                    if refund > 0 {
                        dynasm!(self.ops ; .arch x64 ; add r12, refund as i32);
                    }
                    self.set_pc(pc);
                    dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_NEXT as i32 ; jmp extern self.exit);
                }
                Stub::LoadSlow { label, back, kind, fault, addr, dest } => {
                    dynasm!(self.ops
                        ; .arch x64
                        ; =>label
                    );
                    self.push_volatile();
                    self.slow_addr(addr);
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rdi, r15
                        ; mov edx, kind as i32
                    );
                    self.call(helpers::load_slow as *const () as usize);
                    self.pop_volatile();
                    dynasm!(self.ops
                        ; .arch x64
                        ; test rdx, rdx
                        ; jnz =>fault
                    );
                    if let Some(c) = dest {
                        dynasm!(self.ops ; .arch x64 ; mov Rq(c), rax);
                    }
                    dynasm!(self.ops ; .arch x64 ; jmp =>back);
                }
                Stub::StoreSlow { label, back, size, fault, next, addr } => {
                    dynasm!(self.ops
                        ; .arch x64
                        ; =>label
                    );
                    self.push_volatile();
                    self.slow_addr(addr);
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rdi, r15
                        ; mov ecx, size as i32
                    );
                    self.call(helpers::store_slow as *const () as usize);
                    self.pop_volatile();
                    dynasm!(self.ops
                        ; .arch x64
                        ; cmp eax, STATUS_SIGNAL as i32
                        ; je =>fault
                        ; ja =>next
                        ; jmp =>back
                    );
                }
            }
        }
    }
}
