//! Guest memory accesses: address computation, the inline checks and the slow paths
//! they fall back to (see the invariants in the parent module).

use super::*;

impl Emitter<'_> {
    /// Computes the address `x[rs1] + imm` into `rsi`.
    pub(super) fn addr(&mut self, rs1: u8, imm: i32) {
        if rs1 == 0 {
            dynasm!(self.ops ; .arch x64 ; mov rsi, imm);
        } else if let Some(c) = self.alloc[rs1 as usize & 31] {
            dynasm!(self.ops ; .arch x64 ; lea rsi, [Rq(c) + imm]);
        } else {
            self.ld(Rq::RSI, rs1);
            if imm != 0 {
                dynasm!(self.ops ; .arch x64 ; add rsi, imm);
            }
        }
    }

    /// Emits the one inline check of an access at `rsi`: jumps to `slow` unless it starts
    /// below the end of the guest space (`mem_size` in the context). Alignment, permissions, code pages and an
    /// access that runs over the end (into the guard region) are left to the host MMU: the
    /// access instruction that follows is a fault site (see [`Self::fault_site`]).
    pub(super) fn mem_check(&mut self, slow: DynamicLabel) {
        dynasm!(self.ops ; .arch x64 ; cmp rsi, QWORD [r15 + MEM_SIZE_OFF] ; jae =>slow);
    }

    /// Records that the next instruction emitted is a guest access whose host fault resumes
    /// at `slow` with the registers as they are (`rsi` the guest address, `rdx` the value).
    pub(super) fn fault_site(&mut self, slow: DynamicLabel) {
        let at = self.ops.offset().0;
        self.fault_sites.push((at, slow));
    }

    /// A load of kind `kind` into `rax` (then written by `finish`).
    pub(super) fn load(
        &mut self,
        i: &Inst,
        idx: u32,
        ipc: u64,
        kind: u64,
        finish: impl FnOnce(&mut Self),
    ) {
        let slow = self.label();
        let back = self.label();
        let fault = self.fault_label(idx, ipc);
        self.addr(i.rs1, i.imm);
        self.mem_check(slow);
        self.fault_site(slow);
        match kind {
            load_kind::LB => dynasm!(self.ops ; .arch x64 ; movsx rax, BYTE [r14 + rsi]),
            load_kind::LH => dynasm!(self.ops ; .arch x64 ; movsx rax, WORD [r14 + rsi]),
            load_kind::LW => dynasm!(self.ops ; .arch x64 ; movsxd rax, DWORD [r14 + rsi]),
            load_kind::LBU => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [r14 + rsi]),
            load_kind::LHU => dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [r14 + rsi]),
            load_kind::LWU => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [r14 + rsi]),
            _ => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [r14 + rsi]),
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        self.stubs.push(Stub::LoadSlow { label: slow, back, kind, fault });
        finish(self);
    }

    /// A store of `size` bytes of `rdx` (loaded by `value`) to `x[rs1] + imm`.
    pub(super) fn store(
        &mut self,
        i: &Inst,
        idx: u32,
        ipc: u64,
        size: u32,
        value: impl FnOnce(&mut Self),
    ) {
        let slow = self.label();
        let back = self.label();
        let fault = self.fault_label(idx, ipc);
        let next = self.next_label(idx, ipc.wrapping_add(i.len as u64));
        self.addr(i.rs1, i.imm);
        value(self);
        self.mem_check(slow);
        self.fault_site(slow);
        match size {
            1 => dynasm!(self.ops ; .arch x64 ; mov BYTE [r14 + rsi], dl),
            2 => dynasm!(self.ops ; .arch x64 ; mov WORD [r14 + rsi], dx),
            4 => dynasm!(self.ops ; .arch x64 ; mov DWORD [r14 + rsi], edx),
            _ => dynasm!(self.ops ; .arch x64 ; mov QWORD [r14 + rsi], rdx),
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        self.stubs.push(Stub::StoreSlow { label: slow, back, size, fault, next });
    }
}
