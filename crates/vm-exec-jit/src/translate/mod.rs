//! Translation of one decoded guest block into x86-64 code.
//!
//! Layout by concern: `regs` (register assignment, spills and reloads), `memory` (guest
//! loads and stores), `int` (inline integer ALU, multiply, divide), `fp` (inline floating
//! point), `exits` (trampoline, exit sites, stubs and slow paths); this module holds the
//! per-instruction dispatch.
//!
//! Shape of a translated block (all in the code cache's one executable buffer):
//!
//! ```text
//! entry:  sub r12, N ; jl fuel_stub        ; not enough fuel: nothing of the block runs
//!         add qword [r15 + block_execs], 1   ; only with `count_blocks` (statistics)
//!         <instruction 0> ... <instruction N-1>
//!         <exit>                           ; direct exit site, jalr lookup, or signal
//! stubs:  out-of-line slow paths and exits
//! ```
//!
//! Invariants:
//! - Fuel: the block charges all N instructions at entry (a block with no instruction, one
//!   that starts at an illegal or unfetchable instruction, requires one unit of fuel without
//!   charging it). Every exit taken before the end refunds exactly the instructions that did
//!   not retire, so `fuel_at_entry - r12` is always the number of retired instructions.
//! - Guest registers live in the context (`[r15 + x_off(r)]`), except those held in the
//!   nine cache registers (`rbx`, `rbp`, `r13`, `r8`..`r11`, `rdi`, `rsi`; see `regs`):
//!   - the *globals* `a0`..`a5` (x10..x15) are always in `rbx`, `rbp`, `r13`, `r8`, `r9`,
//!     `r10` while any translated code runs: loaded by the trampoline on entry from the
//!     dispatcher, written back by the common exit, untouched by chained jumps, jump-table
//!     jumps and self-loops, and written back before / reloaded after every helper call
//!     that reads or writes guest registers. While translated code runs, their context
//!     copies are stale; whenever the dispatcher runs (and so the interpreter, system calls,
//!     signal delivery, the gdb stub, strace), the context is exact.
//!   - up to three *locals* per block (`r11`, `rdi`, `rsi`), the non-global registers the block uses
//!     most: loaded after the fuel check, written back (those the block writes) on every
//!     path that leaves the block (exit sites before their `jmp`, so chained and unchained
//!     paths alike; jump-table probes; stubs) and around helper calls as the globals are.
//!
//!   While a host register holds a guest register, the host copy is its only up-to-date
//!   value. Slow-path memory helpers, which touch no guest register, preserve the
//!   caller-saved cache registers with `push`/`pop`. `rax`, `rcx`, `rdx` hold
//!   temporaries only (`rdi` and `rsi` are also the first helper arguments, set after the cache
//!   registers were saved). x0 reads as an immediate zero and writes to it (or to the
//!   interpreter's sink register 32) are dropped.
//! - A block that branches to its own start (with chaining on) is a loop: the back edge
//!   charges the next round (`sub r12, N ; jge body`) and goes straight to the body after
//!   the locals' loads, so registers stay in place; without fuel for a whole round it
//!   writes back and exits with `EXIT_FUEL` at the block start. Loops of several blocks run
//!   through chained jumps, each block charging its own fuel at entry.
//! - Guest memory goes through the host MMU: a load or store `x[rs1] + disp` is one bound
//!   check of the *base register* (it must be below the end of the space, `mem_size` in the
//!   context) and one host access at `r14 + base + disp` (the base is `rs1`'s cache register,
//!   or `rax` loaded from the context), which is a *fault site*; a load whose destination has
//!   a cache register loads straight into it. Every guest page has its real host protection
//!   (unmapped pages none, read-only pages read-only, pages holding code read-only), and the
//!   displacement (under 2 KiB) or the access width can take a checked base at most that far
//!   below 0 or past the end, into the guard regions on both sides of the reservation, so any
//!   access the guest may not make faults on the host; the fault handler resumes at the
//!   site's slow path (`vm_exec_core::memory::JitFaultScope`), which saves the caller-saved
//!   cache registers, forms the full guest address in `rsi` from the untouched base register and redoes the access through
//!   the address space: misaligned and page-straddling accesses, guest faults (exact pc and
//!   address) and stores into code pages (performed, the page invalidated, then back to the
//!   dispatcher).
//! - A direct exit is a 5-byte `jmp rel32` (a *site*) to a stub that stores the target pc
//!   and the site id and returns to the dispatcher; chaining rewrites the `rel32` to point
//!   at the target block's entry, unchaining restores it. An indirect jump (`jalr`) probes
//!   the jump table and jumps to the cached translation, or exits with `EXIT_INDIRECT`.
//! - Division never traps: zero divisors and `MIN / -1` are handled before `idiv`.

use crate::context::*;
use crate::helpers::{self, load_kind, STATUS_SIGNAL};
use dynasmrt::x64::{Rq, X64Relocation};
use dynasmrt::VecAssembler;

/// The assembler translations are emitted into: one block at a time, into a vector, with its
/// final host address as the base (see [`crate::cache`]).
pub(crate) type Asm = VecAssembler<X64Relocation>;

use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi};
use vm_exec_core::exec::signal;
use vm_exec_core::inst::{Inst, Op};
use vm_exec_interp::block::{is_terminator, Block, Tail};

mod exits;
mod fp;
mod int;
mod memory;
mod regs;

pub(crate) use exits::emit_trampoline;
use regs::*;

/// log2 of the number of jump-table entries.
pub(crate) const JTAB_BITS: u32 = 12;
/// Number of jump-table entries.
pub(crate) const JTAB_SIZE: usize = 1 << JTAB_BITS;

/// Upper bound of the code emitted for one block: a fixed part plus a part per instruction.
/// The code cache flushes before a translation could exceed its capacity, so the executable
/// buffer never has to grow (which would move code that tables point into).
pub(crate) const fn max_code_bytes(insts: usize) -> usize {
    256 + insts * MAX_BYTES_PER_INST
}
/// See [`max_code_bytes`]; checked by a unit test against worst cases.
pub(crate) const MAX_BYTES_PER_INST: usize = 384;

/// The jump table's slot for guest pc `pc`.
#[inline(always)]
pub(crate) fn jtab_slot(pc: u64) -> usize {
    ((pc >> 1) as usize) & (JTAB_SIZE - 1)
}

/// A direct exit site of a translated block.
#[derive(Clone, Debug)]
pub(crate) struct SiteSpec {
    /// Offset of the site's `jmp rel32` instruction.
    pub jmp: usize,
    /// Offset of its stub (the unchained target).
    pub stub: usize,
    /// Guest pc it leads to.
    pub target: u64,
}

/// What translating a block produced.
#[derive(Debug)]
pub(crate) struct Translation {
    /// Offset of the block's entry.
    pub entry: usize,
    /// Its direct exit sites; site `i` has id `first_site + i`.
    pub sites: Vec<SiteSpec>,
    /// Its guest accesses: `(offset of the access instruction, offset of its slow path)`,
    /// in increasing order (see `vm_exec_core::memory::JitFaultScope`).
    pub fault_sites: Vec<(usize, usize)>,
}

/// Options of the translator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Whether `jalr` probes the jump table (chaining on) or always exits.
    pub chaining: bool,
    /// Whether every block entry increments `block_execs` (statistics only).
    pub count_blocks: bool,
}

enum Stub {
    Fuel {
        label: DynamicLabel,
    },
    /// Not enough fuel to go round a self-loop again: refund, write back, exit.
    LoopFuel {
        label: DynamicLabel,
    },
    Site {
        label: DynamicLabel,
        index: usize,
    },
    Signal {
        label: DynamicLabel,
        pc: u64,
        refund: u32,
        fixed: Option<(i32, Option<u64>)>,
    },
    Next {
        label: DynamicLabel,
        pc: u64,
        refund: u32,
    },
    LoadSlow {
        label: DynamicLabel,
        back: DynamicLabel,
        kind: u64,
        fault: DynamicLabel,
        addr: memory::Addr,
        /// The cache register the fast path loads into (`None`: `rax`).
        dest: Option<Rq>,
    },
    StoreSlow {
        label: DynamicLabel,
        back: DynamicLabel,
        size: u32,
        fault: DynamicLabel,
        next: DynamicLabel,
        addr: memory::Addr,
    },
}

struct Emitter<'a> {
    ops: &'a mut Asm,
    /// Host address of the common exit (see [`emit_trampoline`]).
    exit: usize,
    /// Host register caching each guest register, if any.
    alloc: [Option<Rq>; 32],
    /// Cached registers the block writes: these are written back at exits.
    dirty: Vec<(u8, Rq)>,
    /// Every cached register.
    cached: Vec<(u8, Rq)>,
    /// Start of the block's body (after the fuel check and register loads), the target of
    /// a self-loop when chaining.
    body: DynamicLabel,
    pc: u64,
    n: u32,
    first_site: u32,
    opts: Options,
    stubs: Vec<Stub>,
    sites: Vec<SiteSpec>,
    /// Guest accesses emitted so far: offset of the access instruction, its slow path.
    fault_sites: Vec<(usize, DynamicLabel)>,
}

/// Translates `block` at the end of `ops` (uncommitted). `first_site` is the id the block's
/// first exit site gets.
pub(crate) fn translate(
    ops: &mut Asm,
    block: &Block,
    first_site: u32,
    opts: Options,
    exit: usize,
) -> Translation {
    let n = block.insts.len() as u32;
    let alloc = allocate(&block.insts);
    let cached: Vec<(u8, Rq)> = (0..32u8)
        .filter(|&g| !GLOBALS.iter().any(|&(gg, _)| gg == g))
        .filter_map(|g| alloc[g as usize].map(|h| (g, h)))
        .collect();
    let dirty: Vec<(u8, Rq)> = cached
        .iter()
        .copied()
        .filter(|&(g, _)| block.insts.iter().any(|i| i.op.writes_int_rd() && i.rd == g))
        .collect();
    let body = ops.new_dynamic_label();
    let mut e = Emitter {
        ops,
        exit,
        body,
        alloc,
        dirty,
        cached,
        pc: block.start,
        n,
        first_site,
        opts,
        stubs: Vec::new(),
        sites: Vec::new(),
        fault_sites: Vec::new(),
    };
    let entry = e.ops.offset().0;
    let fuel = e.ops.new_dynamic_label();
    if n > 0 {
        dynasm!(e.ops ; .arch x64 ; sub r12, n as i32 ; jl =>fuel);
    } else {
        dynasm!(e.ops ; .arch x64 ; cmp r12, 1 ; jl =>fuel);
    }
    e.stubs.push(Stub::Fuel { label: fuel });
    if opts.count_blocks {
        dynasm!(e.ops ; .arch x64 ; add QWORD [r15 + BLOCK_EXECS_OFF], 1);
    }
    e.reload_locals();
    dynasm!(e.ops ; .arch x64 ; =>body);
    let mut pc = block.start;
    for (idx, inst) in block.insts.iter().enumerate() {
        e.inst(inst, idx as u32, pc);
        pc = pc.wrapping_add(inst.len as u64);
    }
    let ends_in_terminator = block.insts.last().is_some_and(|i| is_terminator(i.op));
    if !ends_in_terminator {
        match block.tail {
            Tail::Normal => e.direct_exit(block.end),
            Tail::Illegal => e.signal_now(block.end, 0, signal::SIGILL, None),
            Tail::FetchFault(a) => e.signal_now(block.end, 0, signal::SIGSEGV, Some(a)),
        }
    }
    e.emit_stubs();
    let fault_sites = e
        .fault_sites
        .iter()
        .filter_map(|&(at, slow)| Some((at, e.ops.labels().resolve_dynamic(slow).ok()?.0)))
        .collect();
    Translation { entry, sites: e.sites, fault_sites }
}

impl Emitter<'_> {
    fn inst(&mut self, i: &Inst, idx: u32, ipc: u64) {
        use Op::*;
        let next_pc = ipc.wrapping_add(i.len as u64);
        let rd = i.rd;
        let imm = i.imm;
        match i.op {
            Lui => self.st_const(rd, imm as i64 as u64),
            Auipc => self.st_const(rd, ipc.wrapping_add(imm as i64 as u64)),
            Jal => {
                self.st_const(rd, next_pc);
                self.direct_exit(ipc.wrapping_add(imm as i64 as u64));
            }
            Jalr => {
                self.ld(Rq::RAX, i.rs1);
                if imm != 0 {
                    dynasm!(self.ops ; .arch x64 ; add rax, imm);
                }
                // The target goes into the context's pc only when leaving for the dispatcher:
                // every translated block's own exits and stubs set the pc they need.
                dynasm!(self.ops ; .arch x64 ; and rax, -2);
                if rd != 0 && rd < 32 {
                    if let Some(c) = self.alloc[rd as usize] {
                        dynasm!(self.ops ; .arch x64 ; mov Rq(c), QWORD next_pc as i64);
                    } else if next_pc as i64 == next_pc as i32 as i64 {
                        dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + x_off(rd)], next_pc as i32);
                    } else {
                        dynasm!(self.ops ; .arch x64 ; mov rcx, QWORD next_pc as i64 ; mov QWORD [r15 + x_off(rd)], rcx);
                    }
                }
                self.spill();
                if self.opts.chaining {
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov rcx, rax
                        ; shr rcx, 1
                        ; and ecx, (JTAB_SIZE - 1) as i32
                        ; shl ecx, 4
                        ; add rcx, QWORD [r15 + JTAB_OFF]
                        ; cmp rax, QWORD [rcx]
                        ; jne >miss
                        ; jmp QWORD [rcx + 8]
                        ; miss:
                    );
                }
                dynasm!(self.ops
                    ; .arch x64
                    ; mov QWORD [r15 + PC_OFF], rax
                    ; mov eax, EXIT_INDIRECT as i32
                    ; jmp extern self.exit
                );
            }
            Beq | Bne | Blt | Bge | Bltu | Bgeu => {
                // The first operand stays in its cache register when it has one.
                let a = match self.alloc[i.rs1 as usize & 31] {
                    Some(c) if i.rs1 != 0 => c,
                    _ => {
                        self.ld(Rq::RAX, i.rs1);
                        Rq::RAX
                    }
                };
                if i.rs2 == 0 {
                    dynasm!(self.ops ; .arch x64 ; test Rq(a), Rq(a));
                } else if let Some(c) = self.alloc[i.rs2 as usize & 31] {
                    dynasm!(self.ops ; .arch x64 ; cmp Rq(a), Rq(c));
                } else {
                    dynasm!(self.ops ; .arch x64 ; cmp Rq(a), QWORD [r15 + x_off(i.rs2)]);
                }
                let taken = self.label();
                match i.op {
                    Beq => dynasm!(self.ops ; .arch x64 ; je =>taken),
                    Bne => dynasm!(self.ops ; .arch x64 ; jne =>taken),
                    Blt => dynasm!(self.ops ; .arch x64 ; jl =>taken),
                    Bge => dynasm!(self.ops ; .arch x64 ; jge =>taken),
                    Bltu => dynasm!(self.ops ; .arch x64 ; jb =>taken),
                    _ => dynasm!(self.ops ; .arch x64 ; jae =>taken),
                }
                self.direct_exit(next_pc);
                dynasm!(self.ops ; .arch x64 ; =>taken);
                self.direct_exit(ipc.wrapping_add(imm as i64 as u64));
            }
            Lb => self.load(i, idx, ipc, load_kind::LB, true, |e| e.st(rd, Rq::RAX)),
            Lh => self.load(i, idx, ipc, load_kind::LH, true, |e| e.st(rd, Rq::RAX)),
            Lw => self.load(i, idx, ipc, load_kind::LW, true, |e| e.st(rd, Rq::RAX)),
            Ld => self.load(i, idx, ipc, load_kind::LD, true, |e| e.st(rd, Rq::RAX)),
            Lbu => self.load(i, idx, ipc, load_kind::LBU, true, |e| e.st(rd, Rq::RAX)),
            Lhu => self.load(i, idx, ipc, load_kind::LHU, true, |e| e.st(rd, Rq::RAX)),
            Lwu => self.load(i, idx, ipc, load_kind::LWU, true, |e| e.st(rd, Rq::RAX)),
            Flw => self.load(i, idx, ipc, load_kind::LWU, false, |e| {
                dynasm!(e.ops
                    ; .arch x64
                    ; mov rcx, QWORD 0xffff_ffff_0000_0000u64 as i64
                    ; or rax, rcx
                    ; mov QWORD [r15 + f_off(rd)], rax
                );
            }),
            Fld => self.load(i, idx, ipc, load_kind::LD, false, |e| {
                dynasm!(e.ops ; .arch x64 ; mov QWORD [r15 + f_off(rd)], rax);
            }),
            Sb | Sh | Sw | Sd => {
                let size = match i.op {
                    Sb => 1,
                    Sh => 2,
                    Sw => 4,
                    _ => 8,
                };
                let rs2 = i.rs2;
                self.store(i, idx, ipc, size, |e| e.ld(Rq::RDX, rs2));
            }
            Fsw | Fsd => {
                let size = if i.op == Fsw { 4 } else { 8 };
                let rs2 = i.rs2;
                self.store(i, idx, ipc, size, |e| {
                    dynasm!(e.ops ; .arch x64 ; mov rdx, QWORD [r15 + f_off(rs2)]);
                });
            }
            Addi | Slti | Sltiu | Xori | Ori | Andi | Slli | Srli | Srai | Addiw | Slliw
            | Srliw | Sraiw => {
                if rd == 0 || rd >= 32 {
                    return;
                }
                if self.alu_direct(i) {
                    return;
                }
                self.ld(Rq::RAX, i.rs1);
                let sh = (imm & 63) as i8;
                match i.op {
                    Addi => {
                        if imm != 0 {
                            dynasm!(self.ops ; .arch x64 ; add rax, imm);
                        }
                    }
                    Slti => {
                        dynasm!(self.ops ; .arch x64 ; xor edx, edx ; cmp rax, imm ; setl dl ; mov rax, rdx)
                    }
                    Sltiu => {
                        dynasm!(self.ops ; .arch x64 ; xor edx, edx ; cmp rax, imm ; setb dl ; mov rax, rdx)
                    }
                    Xori => dynasm!(self.ops ; .arch x64 ; xor rax, imm),
                    Ori => dynasm!(self.ops ; .arch x64 ; or rax, imm),
                    Andi => dynasm!(self.ops ; .arch x64 ; and rax, imm),
                    Slli => dynasm!(self.ops ; .arch x64 ; shl rax, sh),
                    Srli => dynasm!(self.ops ; .arch x64 ; shr rax, sh),
                    Srai => dynasm!(self.ops ; .arch x64 ; sar rax, sh),
                    Addiw => dynasm!(self.ops ; .arch x64 ; add eax, imm ; movsxd rax, eax),
                    Slliw => dynasm!(self.ops ; .arch x64 ; shl eax, sh & 31 ; movsxd rax, eax),
                    Srliw => dynasm!(self.ops ; .arch x64 ; shr eax, sh & 31 ; movsxd rax, eax),
                    _ => dynasm!(self.ops ; .arch x64 ; sar eax, sh & 31 ; movsxd rax, eax),
                }
                self.st(rd, Rq::RAX);
            }
            Add | Sub | Sll | Slt | Sltu | Xor | Srl | Sra | Or | And | Addw | Subw | Sllw
            | Srlw | Sraw | Mul | Mulh | Mulhsu | Mulhu | Mulw => {
                if rd == 0 || rd >= 32 {
                    return;
                }
                if self.alu_direct(i) {
                    return;
                }
                self.ld2(i);
                match i.op {
                    Add => dynasm!(self.ops ; .arch x64 ; add rax, rcx),
                    Sub => dynasm!(self.ops ; .arch x64 ; sub rax, rcx),
                    Sll => dynasm!(self.ops ; .arch x64 ; shl rax, cl),
                    Slt => {
                        dynasm!(self.ops ; .arch x64 ; xor edx, edx ; cmp rax, rcx ; setl dl ; mov rax, rdx)
                    }
                    Sltu => {
                        dynasm!(self.ops ; .arch x64 ; xor edx, edx ; cmp rax, rcx ; setb dl ; mov rax, rdx)
                    }
                    Xor => dynasm!(self.ops ; .arch x64 ; xor rax, rcx),
                    Srl => dynasm!(self.ops ; .arch x64 ; shr rax, cl),
                    Sra => dynasm!(self.ops ; .arch x64 ; sar rax, cl),
                    Or => dynasm!(self.ops ; .arch x64 ; or rax, rcx),
                    And => dynasm!(self.ops ; .arch x64 ; and rax, rcx),
                    Addw => dynasm!(self.ops ; .arch x64 ; add eax, ecx ; movsxd rax, eax),
                    Subw => dynasm!(self.ops ; .arch x64 ; sub eax, ecx ; movsxd rax, eax),
                    Sllw => dynasm!(self.ops ; .arch x64 ; shl eax, cl ; movsxd rax, eax),
                    Srlw => dynasm!(self.ops ; .arch x64 ; shr eax, cl ; movsxd rax, eax),
                    Sraw => dynasm!(self.ops ; .arch x64 ; sar eax, cl ; movsxd rax, eax),
                    Mul => dynasm!(self.ops ; .arch x64 ; imul rax, rcx),
                    Mulw => dynasm!(self.ops ; .arch x64 ; imul eax, ecx ; movsxd rax, eax),
                    Mulh => dynasm!(self.ops ; .arch x64 ; imul rcx ; mov rax, rdx),
                    Mulhu => dynasm!(self.ops ; .arch x64 ; mul rcx ; mov rax, rdx),
                    // high(signed a * unsigned b) = high_unsigned(a, b) - (a < 0 ? b : 0)
                    // (`a < 0 ? b : 0` waits on the stack: no free temporary is left.)
                    _ => dynasm!(self.ops
                        ; .arch x64
                        ; mov rdx, rax
                        ; sar rdx, 63
                        ; and rdx, rcx
                        ; push rdx
                        ; mul rcx
                        ; pop rcx
                        ; sub rdx, rcx
                        ; mov rax, rdx
                    ),
                }
                self.st(rd, Rq::RAX);
            }
            Div | Divu | Rem | Remu | Divw | Divuw | Remw | Remuw => {
                if rd == 0 || rd >= 32 {
                    return;
                }
                self.ld2(i);
                self.divide(i.op);
                self.st(rd, Rq::RAX);
            }
            Fence => {}
            FenceI => {
                self.spill();
                self.set_pc(next_pc);
                dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_FENCE_I as i32 ; jmp extern self.exit);
            }
            Ecall => {
                self.spill();
                self.set_pc(next_pc);
                dynasm!(self.ops ; .arch x64 ; mov eax, EXIT_ECALL as i32 ; jmp extern self.exit);
            }
            Ebreak => self.signal_now(ipc, self.n - idx, signal::SIGTRAP, None),
            Csrrw | Csrrs | Csrrc | Csrrwi | Csrrsi | Csrrci => {
                let fault = self.fault_label(idx, ipc);
                self.spill_for_helper();
                dynasm!(self.ops
                    ; .arch x64
                    ; mov QWORD [r15 + FUEL_OFF], r12
                    ; mov rdi, r15
                    ; mov rsi, QWORD i as *const Inst as i64
                    ; mov edx, (self.n - idx) as i32
                );
                self.call(helpers::csr_op as *const () as usize);
                self.reload_after_helper();
                dynasm!(self.ops ; .arch x64 ; test eax, eax ; jnz =>fault);
            }
            vm_exec_core::atomic_ops!() => {
                self.status_call(helpers::amo_op as *const () as usize, i, idx, ipc, true);
            }
            FmvXD => {
                if rd != 0 && rd < 32 {
                    dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [r15 + f_off(i.rs1)]);
                    self.st(rd, Rq::RAX);
                }
            }
            FmvDX => {
                self.ld(Rq::RAX, i.rs1);
                dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + f_off(rd)], rax);
            }
            FaddD | FsubD | FmulD | FdivD | FsqrtD | FcvtDW | FcvtDL | FcvtWD | FcvtLD
                if self.fast_fp_applies(i) =>
            {
                self.fast_fp(i, idx, ipc)
            }
            FsgnjD | FsgnjnD | FsgnjxD => {
                dynasm!(self.ops
                    ; .arch x64
                    ; mov rax, QWORD [r15 + f_off(i.rs1)]
                    ; mov rcx, QWORD [r15 + f_off(i.rs2)]
                    ; mov rdx, QWORD 0x8000_0000_0000_0000u64 as i64
                );
                match i.op {
                    FsgnjD => {
                        dynasm!(self.ops ; .arch x64 ; and rcx, rdx ; not rdx ; and rax, rdx ; or rax, rcx)
                    }
                    FsgnjnD => {
                        dynasm!(self.ops ; .arch x64 ; not rcx ; and rcx, rdx ; not rdx ; and rax, rdx ; or rax, rcx)
                    }
                    _ => dynasm!(self.ops ; .arch x64 ; and rcx, rdx ; xor rax, rcx),
                }
                dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + f_off(rd)], rax);
            }
            _ => self.status_call(helpers::fp_op as *const () as usize, i, idx, ipc, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_exec_interp::block::MAX_BLOCK_INSTS;

    fn inst(op: Op, rd: u8, rs1: u8, rs2: u8, rm: u8, imm: i32) -> Inst {
        Inst { op, rd, rs1, rs2, rs3: 3, rm, len: 4, imm }
    }

    fn block_of(op: Op, rm: u8) -> Block {
        // Registers 5..=12 are used everywhere, so every local is cached and dirty: every exit
        // and helper call carries the largest spill code.
        let insts: Vec<Inst> = (0..MAX_BLOCK_INSTS)
            .map(|k| {
                inst(
                    op,
                    5 + (k % 8) as u8,
                    5 + ((k + 1) % 8) as u8,
                    5 + ((k + 2) % 8) as u8,
                    rm,
                    -2048,
                )
            })
            .collect();
        Block {
            start: 0x1_0000_0000,
            end: 0x1_0000_0000 + 4 * insts.len() as u64,
            insts: insts.into(),
            tail: Tail::Normal,
        }
    }

    #[test]
    fn worst_case_blocks_fit_the_size_bound() {
        let mut asm = Asm::new(0x7000_0000);
        let (_, exit) = emit_trampoline(&mut asm);
        let exit = 0x7000_0000 + exit;
        let worst = [
            (Op::Ld, 0),
            (Op::Sd, 0),
            (Op::Fsd, 0),
            (Op::Flw, 0),
            (Op::FaddD, 7),
            (Op::FdivD, 0),
            (Op::FcvtWD, 1),
            (Op::FmaddS, 7),
            (Op::FcvtSW, 7),
            (Op::Csrrw, 0),
            (Op::AmoaddD, 0),
            (Op::ScW, 0),
            (Op::Divw, 0),
            (Op::Rem, 0),
            (Op::Mulhsu, 0),
            (Op::Auipc, 0),
            (Op::Ebreak, 0),
        ];
        for (op, rm) in worst {
            let before = asm.offset().0;
            translate(
                &mut asm,
                &block_of(op, rm),
                0,
                Options { chaining: true, count_blocks: true },
                exit,
            );
            let size = asm.offset().0 - before;
            assert!(size <= max_code_bytes(MAX_BLOCK_INSTS), "{op:?}: {size} bytes");
        }
        // Terminators: a block of 63 loads ending in each control transfer.
        for last in [Op::Beq, Op::Bltu, Op::Jal, Op::Jalr, Op::Ecall, Op::FenceI] {
            let mut b = block_of(Op::Ld, 0);
            let mut insts = b.insts.to_vec();
            insts[MAX_BLOCK_INSTS - 1] = inst(last, 5, 6, 7, 0, 16);
            b.insts = insts.into();
            let before = asm.offset().0;
            translate(&mut asm, &b, 0, Options { chaining: true, count_blocks: true }, exit);
            assert!(asm.offset().0 - before <= max_code_bytes(MAX_BLOCK_INSTS), "{last:?}");
        }
        asm.commit().unwrap();
    }

    #[test]
    fn exit_sites_are_patchable_rel32_jumps() {
        let mut asm = Asm::new(0x7000_0000);
        let (_, exit) = emit_trampoline(&mut asm);
        let insts = vec![inst(Op::Addi, 5, 5, 0, 0, 1), inst(Op::Bne, 0, 5, 6, 0, -4)];
        let b = Block { start: 0x1000, end: 0x1008, insts: insts.into(), tail: Tail::Normal };
        let t = translate(
            &mut asm,
            &b,
            7,
            Options { chaining: false, count_blocks: true },
            0x7000_0000 + exit,
        );
        let code = asm.take().unwrap();
        assert_eq!(t.sites.len(), 2);
        for s in &t.sites {
            assert_eq!(code[s.jmp], 0xe9, "site is `jmp rel32`");
            let rel = i32::from_le_bytes(code[s.jmp + 1..s.jmp + 5].try_into().unwrap());
            assert_eq!(
                s.jmp as i64 + 5 + rel as i64,
                s.stub as i64,
                "unchained site leads to its stub"
            );
        }
        assert_eq!(t.sites[0].target, 0x1008);
        assert_eq!(t.sites[1].target, 0x1000);
    }
}
