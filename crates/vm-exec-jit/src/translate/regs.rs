//! Register assignment: which guest registers live in host registers, and the loads, stores,
//! spills and reloads around them (see the invariants in the parent module).
//!
//! Two kinds of host-resident guest registers share the nine cache registers:
//! - *globals*: a fixed assignment, the same in every translated block, of the guest
//!   registers used most across the benchmarks (`a0`..`a5`). They stay in their host
//!   registers across chained jumps, jump-table jumps and self-loops: the trampoline loads
//!   them when the dispatcher enters translated code and the common exit writes them back,
//!   so every path that returns to the dispatcher (exit sites, stubs, signals, fuel) leaves
//!   them in the context. Helper calls that read or write guest registers write them back
//!   before the call and reload them after it.
//! - *locals*: the remaining cache registers (`r11`, `rdi`, `rsi`), given per block to the non-global registers
//!   the block uses most; loaded after the block's fuel check, written back (those the block
//!   writes) on every path that leaves the block.

use super::*;

/// Host registers that may hold guest registers, callee-saved ones first.
pub(super) const CACHE_REGS: [Rq; 9] =
    [Rq::RBX, Rq::RBP, Rq::R13, Rq::R8, Rq::R9, Rq::R10, Rq::R11, Rq::RDI, Rq::RSI];

/// The fixed assignment of global guest registers to host registers.
pub(crate) const GLOBALS: [(u8, Rq); 6] =
    [(10, Rq::RBX), (11, Rq::RBP), (12, Rq::R13), (13, Rq::R8), (14, Rq::R9), (15, Rq::R10)];

/// Host registers left for per-block locals.
const LOCAL_REGS: [Rq; CACHE_REGS.len() - GLOBALS.len()] = [Rq::R11, Rq::RDI, Rq::RSI];

/// Chooses the host register of every guest register: the globals, then the non-global
/// registers the block uses most (at least twice) in the local registers.
pub(super) fn allocate(insts: &[Inst]) -> [Option<Rq>; 32] {
    let mut uses = [0u32; 32];
    for i in insts {
        // Over-counting (an fp register number counted as an integer one) only affects the
        // choice, never correctness: every access goes through the allocation.
        uses[(i.rs1 & 31) as usize] += 1;
        uses[(i.rs2 & 31) as usize] += 1;
        if i.op.writes_int_rd() {
            uses[(i.rd & 31) as usize] += 1;
        }
    }
    uses[0] = 0;
    let mut alloc = [None; 32];
    for &(g, h) in &GLOBALS {
        alloc[g as usize] = Some(h);
        uses[g as usize] = 0;
    }
    let mut order: Vec<usize> = (1..32).filter(|&r| uses[r] >= 2).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(uses[r]));
    for (&g, &h) in order.iter().zip(LOCAL_REGS.iter()) {
        alloc[g] = Some(h);
    }
    alloc
}

pub(super) fn is_caller_saved(h: Rq) -> bool {
    !matches!(h, Rq::RBX | Rq::RBP | Rq::R13)
}

/// Loads the globals from the context (`r15`); the trampoline does this on every entry.
pub(super) fn load_globals(ops: &mut Asm) {
    for &(g, h) in &GLOBALS {
        dynasm!(ops ; .arch x64 ; mov Rq(h), QWORD [r15 + x_off(g)]);
    }
}

/// Writes the globals back to the context; the common exit does this on every exit.
pub(super) fn store_globals(ops: &mut Asm) {
    for &(g, h) in &GLOBALS {
        dynasm!(ops ; .arch x64 ; mov QWORD [r15 + x_off(g)], Rq(h));
    }
}

impl Emitter<'_> {
    /// Loads guest register `g` into host register `h` (64 bits).
    pub(super) fn ld(&mut self, h: Rq, g: u8) {
        if g == 0 || g >= 32 {
            dynasm!(self.ops ; .arch x64 ; xor Rd(h), Rd(h));
        } else if let Some(c) = self.alloc[g as usize] {
            if c != h {
                dynasm!(self.ops ; .arch x64 ; mov Rq(h), Rq(c));
            }
        } else {
            dynasm!(self.ops ; .arch x64 ; mov Rq(h), QWORD [r15 + x_off(g)]);
        }
    }

    /// Writes every dirty local back to the context (before leaving the block; the globals
    /// stay in their registers).
    pub(super) fn spill(&mut self) {
        for k in 0..self.dirty.len() {
            let (g, h) = self.dirty[k];
            dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + x_off(g)], Rq(h));
        }
    }

    /// Loads every local from the context.
    pub(super) fn reload_locals(&mut self) {
        for k in 0..self.cached.len() {
            let (g, h) = self.cached[k];
            dynasm!(self.ops ; .arch x64 ; mov Rq(h), QWORD [r15 + x_off(g)]);
        }
    }

    /// Before a helper that reads or writes guest registers: the context gets every
    /// host-resident register (dirty locals and all globals).
    pub(super) fn spill_for_helper(&mut self) {
        self.spill();
        store_globals(self.ops);
    }

    /// After a helper that reads or writes guest registers: reload locals and globals.
    pub(super) fn reload_after_helper(&mut self) {
        self.reload_locals();
        load_globals(self.ops);
    }

    /// Whether a caller-saved host register holds a guest register.
    pub(super) fn uses_caller_saved(&self) -> bool {
        GLOBALS.iter().chain(self.cached.iter()).any(|&(_, h)| is_caller_saved(h))
    }

    /// Saves the caller-saved cache registers (six pushes keep the stack 16-byte aligned for
    /// the call).
    pub(super) fn push_volatile(&mut self) {
        if self.uses_caller_saved() {
            dynasm!(self.ops ; .arch x64 ; push rdi ; push rsi ; push r8 ; push r9 ; push r10 ; push r11);
        }
    }

    pub(super) fn pop_volatile(&mut self) {
        if self.uses_caller_saved() {
            dynasm!(self.ops ; .arch x64 ; pop r11 ; pop r10 ; pop r9 ; pop r8 ; pop rsi ; pop rdi);
        }
    }

    /// Stores host register `h` into guest register `g` (dropped for x0 and the sink).
    pub(super) fn st(&mut self, g: u8, h: Rq) {
        if g != 0 && g < 32 {
            if let Some(c) = self.alloc[g as usize] {
                if c != h {
                    dynasm!(self.ops ; .arch x64 ; mov Rq(c), Rq(h));
                }
            } else {
                dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + x_off(g)], Rq(h));
            }
        }
    }

    /// Stores a 64-bit constant into guest register `g`.
    pub(super) fn st_const(&mut self, g: u8, v: u64) {
        if g == 0 || g >= 32 {
            return;
        }
        if let Some(c) = self.alloc[g as usize] {
            if v as i64 == v as i32 as i64 {
                dynasm!(self.ops ; .arch x64 ; mov Rq(c), v as i32);
            } else {
                dynasm!(self.ops ; .arch x64 ; mov Rq(c), QWORD v as i64);
            }
        } else if v as i64 == v as i32 as i64 {
            dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + x_off(g)], v as i32);
        } else {
            dynasm!(self.ops ; .arch x64 ; mov rax, QWORD v as i64 ; mov QWORD [r15 + x_off(g)], rax);
        }
    }

    /// `rax = x[rs1]`, `rcx = x[rs2]`.
    pub(super) fn ld2(&mut self, i: &Inst) {
        self.ld(Rq::RAX, i.rs1);
        self.ld(Rq::RCX, i.rs2);
    }
}
