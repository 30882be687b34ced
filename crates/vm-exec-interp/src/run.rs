//! The dispatch loop: look up a block, run its instructions, act on how it ended.
//!
//! Invariants: the integer register file `x` has 64 slots; slots 0..32 are the guest's
//! registers, slot 32 is the sink for writes to x0 (see [`crate::block::ZERO_SINK`]) and the
//! rest are unused. Every register index is masked with 63, so indexing cannot go out of
//! bounds. `x` is copied from and back to `thread.cpu.x` at entry, at exit, and around system
//! calls; the other architectural state (fp registers, fcsr, reservation) is used in place.

use crate::block::{BlockCache, Tail};
use crate::Tiering;
use vm_exec_core::atomic;
use vm_exec_core::cpu::{CpuState, GuestThread};
use vm_exec_core::csr::{csr_access, CsrOp};
use vm_exec_core::exec::{signal, ExecutionStats, GuestExit, GuestSignal, RunResult, StopReason};
use vm_exec_core::fp;
use vm_exec_core::inst::{Inst, Op};
use vm_exec_core::memory::{AddressSpace, MemFault};
use vm_exec_core::process::Process;
use vm_exec_core::syscall;

/// How a block's execution ended.
enum BlockExit {
    /// Continue at this pc; all `count` instructions retired.
    Next(u64),
    /// The last instruction was `ecall`; all retired; the syscall continues at this pc.
    Ecall(u64),
    /// `fence.i`: flush decoded code, then continue at this pc.
    FenceI(u64),
    /// A fatal signal after this many instructions retired.
    Signal(usize, GuestSignal),
}

/// Runs at most `fuel` instructions. With `tiering`, stops (returning `true`, with
/// `thread.cpu.pc` at the block) before a block that is hot, see [`crate::Tiering`].
pub(crate) fn run(
    cache: &mut BlockCache,
    stats: &mut ExecutionStats,
    thread: &mut GuestThread,
    process: &Process,
    fuel: u64,
    tiering: Option<Tiering>,
) -> (RunResult, bool) {
    cache.attach(process);
    let instret_base = tiering.map_or(stats.instructions, |t| t.instret_base);
    let threshold = tiering.map(|t| t.threshold);
    let mut force = tiering.is_some_and(|t| t.force_first);
    let mut hot = false;
    let mut x = [0u64; 64];
    x[..32].copy_from_slice(&thread.cpu.x);
    let mut pc = thread.cpu.pc;
    let mut retired = 0u64;
    let mut entered = 0u64;
    let mut lookups = 0u64;
    let slow_before = cache.counters.misses + cache.counters.hits;
    let stop = loop {
        cache.sync(&process.mem);
        if retired >= fuel {
            break StopReason::Preempted;
        }
        let entry = cache.lookup_entry(&process.mem, pc);
        lookups += 1;
        if let Some(threshold) = threshold {
            let first = std::mem::take(&mut force);
            if entry.count >= threshold && !first {
                hot = true;
                break StopReason::Preempted;
            }
            entry.count = entry.count.saturating_add(1);
        }
        let entry = &*entry;
        entered += 1;
        let insts = entry.insts();
        let n = insts.len();
        let count = n.min((fuel - retired).min(usize::MAX as u64) as usize);
        let instret = instret_base + retired;
        let exit = exec_block(&insts[..count], pc, &mut x, &mut thread.cpu, &process.mem, instret);
        match exit {
            BlockExit::Next(next) => {
                retired += count as u64;
                pc = next;
                if count == n && !entry.normal_tail {
                    let (signo, addr) = match entry.block().tail {
                        Tail::FetchFault(a) => (signal::SIGSEGV, Some(a)),
                        _ => (signal::SIGILL, None),
                    };
                    break StopReason::Finished(GuestExit::Signaled(GuestSignal {
                        signo,
                        pc,
                        addr,
                    }));
                }
            }
            BlockExit::FenceI(next) => {
                retired += count as u64;
                pc = next;
                process.mem.invalidate_all_code();
            }
            BlockExit::Ecall(next) => {
                retired += count as u64;
                stats.syscalls += 1;
                thread.cpu.x.copy_from_slice(&x[..32]);
                thread.cpu.pc = next;
                let outcome = syscall::dispatch(thread, process);
                x[..32].copy_from_slice(&thread.cpu.x);
                pc = thread.cpu.pc;
                if let Some(stop) = outcome {
                    break stop;
                }
            }
            BlockExit::Signal(done, sig) => {
                retired += done as u64;
                pc = sig.pc;
                break StopReason::Finished(GuestExit::Signaled(sig));
            }
        }
    };
    // Lookups not served by the slow path were direct-mapped hits.
    let slow = cache.counters.misses + cache.counters.hits - slow_before;
    stats.total_executions += entered;
    stats.cache_hits += lookups - slow;
    x[0] = 0;
    thread.cpu.x.copy_from_slice(&x[..32]);
    thread.cpu.pc = pc;
    (RunResult { stop, retired }, hot)
}

#[inline(always)]
fn sext32(v: u64) -> u64 {
    v as i32 as i64 as u64
}

#[cold]
fn mem_fault(i: usize, pc: u64, f: MemFault) -> BlockExit {
    BlockExit::Signal(i, GuestSignal { signo: signal::SIGSEGV, pc, addr: Some(f.addr) })
}

#[cold]
fn sig(i: usize, pc: u64, signo: i32, addr: Option<u64>) -> BlockExit {
    BlockExit::Signal(i, GuestSignal { signo, pc, addr })
}

/// Executes `insts` (a prefix of one block) starting at `pc`.
#[inline(always)]
fn exec_block(
    insts: &[Inst],
    mut pc: u64,
    x: &mut [u64; 64],
    cpu: &mut CpuState,
    mem: &AddressSpace,
    instret: u64,
) -> BlockExit {
    for (idx, i) in insts.iter().enumerate() {
        let ipc = pc;
        pc = pc.wrapping_add(i.len as u64);
        let rd = (i.rd & 63) as usize;
        // Operands are macros, not locals, so each arm loads only what it uses.
        macro_rules! r1 {
            () => {
                x[(i.rs1 & 63) as usize]
            };
        }
        macro_rules! r2 {
            () => {
                x[(i.rs2 & 63) as usize]
            };
        }
        macro_rules! imm {
            () => {
                (i.imm as i64 as u64)
            };
        }
        macro_rules! load {
            ($read:ident, $conv:expr) => {{
                match mem.$read(r1!().wrapping_add(imm!())) {
                    Ok(v) => x[rd] = $conv(v),
                    Err(f) => return mem_fault(idx, ipc, f),
                }
            }};
        }
        macro_rules! store {
            ($write:ident, $v:expr) => {{
                if let Err(f) = mem.$write(r1!().wrapping_add(imm!()), $v) {
                    return mem_fault(idx, ipc, f);
                }
            }};
        }
        macro_rules! branch {
            ($cond:expr) => {{
                return BlockExit::Next(if $cond { ipc.wrapping_add(imm!()) } else { pc });
            }};
        }
        match i.op {
            Op::Lui => x[rd] = imm!(),
            Op::Auipc => x[rd] = ipc.wrapping_add(imm!()),
            Op::Jal => {
                x[rd] = pc;
                return BlockExit::Next(ipc.wrapping_add(imm!()));
            }
            Op::Jalr => {
                let target = r1!().wrapping_add(imm!()) & !1;
                x[rd] = pc;
                return BlockExit::Next(target);
            }
            Op::Beq => branch!(r1!() == r2!()),
            Op::Bne => branch!(r1!() != r2!()),
            Op::Blt => branch!((r1!() as i64) < (r2!() as i64)),
            Op::Bge => branch!((r1!() as i64) >= (r2!() as i64)),
            Op::Bltu => branch!(r1!() < r2!()),
            Op::Bgeu => branch!(r1!() >= r2!()),
            Op::Lb => load!(read_u8, |v: u8| v as i8 as i64 as u64),
            Op::Lh => load!(read_u16, |v: u16| v as i16 as i64 as u64),
            Op::Lw => load!(read_u32, |v: u32| v as i32 as i64 as u64),
            Op::Ld => load!(read_u64, |v: u64| v),
            Op::Lbu => load!(read_u8, |v: u8| v as u64),
            Op::Lhu => load!(read_u16, |v: u16| v as u64),
            Op::Lwu => load!(read_u32, |v: u32| v as u64),
            Op::Sb => store!(write_u8, r2!() as u8),
            Op::Sh => store!(write_u16, r2!() as u16),
            Op::Sw => store!(write_u32, r2!() as u32),
            Op::Sd => store!(write_u64, r2!()),
            Op::Addi => x[rd] = r1!().wrapping_add(imm!()),
            Op::Slti => x[rd] = ((r1!() as i64) < (imm!() as i64)) as u64,
            Op::Sltiu => x[rd] = (r1!() < imm!()) as u64,
            Op::Xori => x[rd] = r1!() ^ imm!(),
            Op::Ori => x[rd] = r1!() | imm!(),
            Op::Andi => x[rd] = r1!() & imm!(),
            Op::Slli => x[rd] = r1!() << (imm!() & 63),
            Op::Srli => x[rd] = r1!() >> (imm!() & 63),
            Op::Srai => x[rd] = ((r1!() as i64) >> (imm!() & 63)) as u64,
            Op::Add => x[rd] = r1!().wrapping_add(r2!()),
            Op::Sub => x[rd] = r1!().wrapping_sub(r2!()),
            Op::Sll => x[rd] = r1!() << (r2!() & 63),
            Op::Slt => x[rd] = ((r1!() as i64) < (r2!() as i64)) as u64,
            Op::Sltu => x[rd] = (r1!() < r2!()) as u64,
            Op::Xor => x[rd] = r1!() ^ r2!(),
            Op::Srl => x[rd] = r1!() >> (r2!() & 63),
            Op::Sra => x[rd] = ((r1!() as i64) >> (r2!() & 63)) as u64,
            Op::Or => x[rd] = r1!() | r2!(),
            Op::And => x[rd] = r1!() & r2!(),
            Op::Addiw => x[rd] = sext32(r1!().wrapping_add(imm!())),
            Op::Slliw => x[rd] = sext32(((r1!() as u32) << (imm!() & 31)) as u64),
            Op::Srliw => x[rd] = sext32(((r1!() as u32) >> (imm!() & 31)) as u64),
            Op::Sraiw => x[rd] = ((r1!() as i32) >> (imm!() & 31)) as i64 as u64,
            Op::Addw => x[rd] = sext32(r1!().wrapping_add(r2!())),
            Op::Subw => x[rd] = sext32(r1!().wrapping_sub(r2!())),
            Op::Sllw => x[rd] = sext32(((r1!() as u32) << (r2!() & 31)) as u64),
            Op::Srlw => x[rd] = sext32(((r1!() as u32) >> (r2!() & 31)) as u64),
            Op::Sraw => x[rd] = ((r1!() as i32) >> (r2!() & 31)) as i64 as u64,
            Op::Fence => std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst),
            Op::FenceI => return BlockExit::FenceI(pc),
            Op::Ecall => return BlockExit::Ecall(pc),
            Op::Ebreak => return sig(idx, ipc, signal::SIGTRAP, None),
            Op::Csrrw | Op::Csrrs | Op::Csrrc | Op::Csrrwi | Op::Csrrsi | Op::Csrrci => {
                let (op, src, writes) = match i.op {
                    Op::Csrrw => (CsrOp::Write, r1!(), true),
                    Op::Csrrs => (CsrOp::Set, r1!(), i.rs1 != 0),
                    Op::Csrrc => (CsrOp::Clear, r1!(), i.rs1 != 0),
                    Op::Csrrwi => (CsrOp::Write, i.rs1 as u64, true),
                    Op::Csrrsi => (CsrOp::Set, i.rs1 as u64, i.rs1 != 0),
                    _ => (CsrOp::Clear, i.rs1 as u64, i.rs1 != 0),
                };
                match csr_access(cpu, (i.imm as u32) & 0xfff, op, src, writes, instret + idx as u64)
                {
                    Some(old) => x[rd] = old,
                    None => return sig(idx, ipc, signal::SIGILL, None),
                }
            }
            Op::Mul => x[rd] = r1!().wrapping_mul(r2!()),
            Op::Mulh => x[rd] = ((r1!() as i64 as i128 * r2!() as i64 as i128) >> 64) as u64,
            Op::Mulhsu => x[rd] = ((r1!() as i64 as i128 * r2!() as i128) >> 64) as u64,
            Op::Mulhu => x[rd] = ((r1!() as u128 * r2!() as u128) >> 64) as u64,
            Op::Div => {
                x[rd] = if r2!() == 0 {
                    u64::MAX
                } else {
                    (r1!() as i64).wrapping_div(r2!() as i64) as u64
                }
            }
            Op::Divu => x[rd] = r1!().checked_div(r2!()).unwrap_or(u64::MAX),
            Op::Rem => {
                x[rd] = if r2!() == 0 {
                    r1!()
                } else {
                    (r1!() as i64).wrapping_rem(r2!() as i64) as u64
                }
            }
            Op::Remu => x[rd] = if r2!() == 0 { r1!() } else { r1!() % r2!() },
            Op::Mulw => x[rd] = sext32(r1!().wrapping_mul(r2!())),
            Op::Divw => {
                let (a, b) = (r1!() as i32, r2!() as i32);
                x[rd] = if b == 0 { u64::MAX } else { a.wrapping_div(b) as i64 as u64 }
            }
            Op::Divuw => {
                let (a, b) = (r1!() as u32, r2!() as u32);
                x[rd] = a.checked_div(b).map_or(u64::MAX, |q| sext32(q as u64))
            }
            Op::Remw => {
                let (a, b) = (r1!() as i32, r2!() as i32);
                x[rd] = if b == 0 { a as i64 as u64 } else { a.wrapping_rem(b) as i64 as u64 }
            }
            Op::Remuw => {
                let (a, b) = (r1!() as u32, r2!() as u32);
                x[rd] = if b == 0 { sext32(a as u64) } else { sext32((a % b) as u64) }
            }
            vm_exec_core::atomic_ops!() => match atomic::execute(i.op, r1!(), r2!(), cpu, mem) {
                Ok(v) => x[rd] = v,
                Err(f) => return sig(idx, ipc, f.signo, Some(f.addr)),
            },
            Op::Flw => match mem.read_u32(r1!().wrapping_add(imm!())) {
                Ok(v) => cpu.f[(i.rd & 31) as usize] = fp::box_f32(v),
                Err(f) => return mem_fault(idx, ipc, f),
            },
            Op::Fld => match mem.read_u64(r1!().wrapping_add(imm!())) {
                Ok(v) => cpu.f[(i.rd & 31) as usize] = v,
                Err(f) => return mem_fault(idx, ipc, f),
            },
            Op::Fsw => store!(write_u32, cpu.f[(i.rs2 & 31) as usize] as u32),
            Op::Fsd => store!(write_u64, cpu.f[(i.rs2 & 31) as usize]),
            vm_exec_core::fp_compute_ops!() => match fp::execute(i, r1!(), cpu) {
                Ok(Some(v)) => x[rd] = v,
                Ok(None) => {}
                Err(_) => return sig(idx, ipc, signal::SIGILL, None),
            },
        }
    }
    BlockExit::Next(pc)
}
