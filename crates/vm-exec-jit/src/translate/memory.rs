//! Guest memory accesses: address computation, the inline checks and the slow paths
//! they fall back to (see the invariants in the parent module).

use super::*;

/// Where a guest access's address is: host register `base` plus displacement `disp`
/// (`|disp| < 2048`). The bound check tests `base` alone; the displacement is added by the
/// host access itself, and the guard regions on both sides of the reservation catch what it
/// takes out of range (see `vm_exec_core::memory::GUARD_SIZE`).
#[derive(Clone, Copy)]
pub(super) struct Addr {
    pub base: Rq,
    pub disp: i32,
}

impl Emitter<'_> {
    /// The address `x[rs1] + imm`: in the cache register of `rs1` when it has one, else in
    /// `rax` (loaded from the context, or the immediate itself for `x0`).
    pub(super) fn addr(&mut self, rs1: u8, imm: i32) -> Addr {
        if rs1 == 0 {
            dynasm!(self.ops ; .arch x64 ; mov rax, imm);
            Addr { base: Rq::RAX, disp: 0 }
        } else if !(-2048..2048).contains(&imm) {
            // Not a RISC-V load or store displacement: no reliance on the guards.
            self.ld(Rq::RAX, rs1);
            dynasm!(self.ops ; .arch x64 ; add rax, imm);
            Addr { base: Rq::RAX, disp: 0 }
        } else if let Some(c) = self.alloc[rs1 as usize & 31] {
            Addr { base: c, disp: imm }
        } else {
            self.ld(Rq::RAX, rs1);
            Addr { base: Rq::RAX, disp: imm }
        }
    }

    /// Emits the one inline check of an access at `a`: jumps to `slow` unless its base
    /// register is below the end of the guest space (`mem_size` in the context). Alignment,
    /// permissions, code pages, the displacement and an access that runs over the end (into
    /// a guard region) are left to the host MMU: the access instruction that follows is a
    /// fault site (see [`Self::fault_site`]).
    pub(super) fn mem_check(&mut self, a: Addr, slow: DynamicLabel) {
        dynasm!(self.ops ; .arch x64 ; cmp Rq(a.base), QWORD [r15 + MEM_SIZE_OFF] ; jae =>slow);
    }

    /// Records that the next instruction emitted is a guest access whose host fault resumes
    /// at `slow` with the registers as they are (the address in its `Addr`, `rdx` the value).
    pub(super) fn fault_site(&mut self, slow: DynamicLabel) {
        let at = self.ops.offset().0;
        self.fault_sites.push((at, slow));
    }

    /// A load of kind `kind`: straight into the cache register of `rd` when `direct` and `rd`
    /// has one (then `finish` is not called), else into `rax` and then written by `finish`.
    pub(super) fn load(
        &mut self,
        i: &Inst,
        idx: u32,
        ipc: u64,
        kind: u64,
        direct: bool,
        finish: impl FnOnce(&mut Self),
    ) {
        let slow = self.label();
        let back = self.label();
        let fault = self.fault_label(idx, ipc);
        let a = self.addr(i.rs1, i.imm);
        let dest = match self.alloc[i.rd as usize & 31] {
            Some(c) if direct && i.rd != 0 && i.rd < 32 => Some(c),
            _ => None,
        };
        let d = dest.unwrap_or(Rq::RAX);
        let (b, m) = (a.base, a.disp);
        self.mem_check(a, slow);
        self.fault_site(slow);
        match kind {
            load_kind::LB => dynasm!(self.ops ; .arch x64 ; movsx Rq(d), BYTE [r14 + Rq(b) + m]),
            load_kind::LH => dynasm!(self.ops ; .arch x64 ; movsx Rq(d), WORD [r14 + Rq(b) + m]),
            load_kind::LW => dynasm!(self.ops ; .arch x64 ; movsxd Rq(d), DWORD [r14 + Rq(b) + m]),
            load_kind::LBU => dynasm!(self.ops ; .arch x64 ; movzx Rd(d), BYTE [r14 + Rq(b) + m]),
            load_kind::LHU => dynasm!(self.ops ; .arch x64 ; movzx Rd(d), WORD [r14 + Rq(b) + m]),
            load_kind::LWU => dynasm!(self.ops ; .arch x64 ; mov Rd(d), DWORD [r14 + Rq(b) + m]),
            _ => dynasm!(self.ops ; .arch x64 ; mov Rq(d), QWORD [r14 + Rq(b) + m]),
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        self.stubs.push(Stub::LoadSlow { label: slow, back, kind, fault, addr: a, dest });
        if dest.is_none() {
            finish(self);
        }
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
        let a = self.addr(i.rs1, i.imm);
        let (b, m) = (a.base, a.disp);
        value(self);
        self.mem_check(a, slow);
        self.fault_site(slow);
        match size {
            1 => dynasm!(self.ops ; .arch x64 ; mov BYTE [r14 + Rq(b) + m], dl),
            2 => dynasm!(self.ops ; .arch x64 ; mov WORD [r14 + Rq(b) + m], dx),
            4 => dynasm!(self.ops ; .arch x64 ; mov DWORD [r14 + Rq(b) + m], edx),
            _ => dynasm!(self.ops ; .arch x64 ; mov QWORD [r14 + Rq(b) + m], rdx),
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        self.stubs.push(Stub::StoreSlow { label: slow, back, size, fault, next, addr: a });
    }
}
