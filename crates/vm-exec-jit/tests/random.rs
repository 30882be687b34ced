//! Randomized differential test: generated RV64GC programs (integer ops with edge values,
//! multiply/divide, loads and stores into a data segment, including misaligned and
//! page-straddling ones, forward branches, counted loops, calls and returns, compressed
//! forms, floating point with every rounding mode, CSRs, atomics) run under the interpreter
//! (the reference) and under the JIT and hybrid engines from the same initial state; the
//! stop reason, retired count, every register, `fcsr`, the LR reservation and the data
//! segment must match.
//!
//! Every generated instruction is checked against the decoder (its op must be the intended
//! one), so the encoder below cannot silently drift into testing something else.
//!
//! `VMX_RANDOM_CASES` overrides the number of programs, `VMX_RANDOM_SEED` the seed.
//!
//! Why this file is long: it is one generator (an encoder for every instruction form it emits,
//! with branch fix-ups, and one generation method per instruction family) plus the single
//! test that runs it; the families share the generator's register pools and state, so they
//! stay in one `impl`.

use std::sync::Arc;
use vm_exec_core::cpu::GuestThread;
use vm_exec_core::decode::decode;
use vm_exec_core::elf::Program;
use vm_exec_core::elf_writer::{write_executable, SegmentSpec};
use vm_exec_core::exec::{Executor, GuestExit, RunResult, StopReason};
use vm_exec_core::inst::Op;
use vm_exec_core::loader;
use vm_exec_core::process::{Process, ProcessConfig};
use vm_exec_interp::Interpreter;
use vm_exec_jit::{HybridEngine, JitConfig, JitEngine};

const CODE: u64 = 0x10000;
const DATA: u64 = 0x20_0000;
const DATA_LEN: usize = 16 * 4096;
/// s0: base register of every regular memory access, points into the middle of the data.
const BASE: u8 = 8;
const BASE_VALUE: u64 = DATA + DATA_LEN as u64 / 2;
/// s1: loop counter.
const LOOP: u8 = 9;
/// t6: scratch address register of atomics.
const AREG: u8 = 31;

// ---------------------------------------------------------------------------------------------
// Random numbers.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// An integer that is often an edge case.
    fn value(&mut self) -> u64 {
        const EDGES: [u64; 14] = [
            0,
            1,
            2,
            u64::MAX,
            u64::MAX - 1,
            i64::MIN as u64,
            i64::MAX as u64,
            0x8000_0000,
            0xffff_ffff_8000_0000,
            0x7fff_ffff,
            0xffff_ffff,
            0x1_0000_0000,
            63,
            32,
        ];
        match self.below(4) {
            0 => self.pick(&EDGES),
            1 => self.range(-100, 100) as u64,
            _ => self.next(),
        }
    }
    /// A floating-point register value: doubles and NaN-boxed singles, often special.
    fn fvalue(&mut self) -> u64 {
        const D: [u64; 12] = [
            0,
            0x8000_0000_0000_0000,
            0x3ff0_0000_0000_0000,
            0xbff0_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff4_0000_0000_0001,
            0x0000_0000_0000_0001,
            0x000f_ffff_ffff_ffff,
            0x7fef_ffff_ffff_ffff,
            0x4340_0000_0000_0000,
        ];
        const S: [u32; 10] = [
            0,
            0x8000_0000,
            0x3f80_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7fa0_0001,
            1,
            0x7f7f_ffff,
            0x4f00_0000,
        ];
        match self.below(6) {
            0 => self.pick(&D),
            1 => 0xffff_ffff_0000_0000 | self.pick(&S) as u64,
            2 => 0xffff_ffff_0000_0000 | (self.next() as u32 as u64),
            3 => ((self.range(-2000, 2000) as f64) / 8.0).to_bits(),
            4 => 0xffff_ffff_0000_0000 | ((self.range(-2000, 2000) as f32) / 4.0).to_bits() as u64,
            _ => self.next(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

fn r_type(op: u32, f3: u32, f7: u32, rd: u8, rs1: u8, rs2: u8) -> u32 {
    f7 << 25 | (rs2 as u32) << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
}
fn i_type(op: u32, f3: u32, rd: u8, rs1: u8, imm: i32) -> u32 {
    ((imm as u32) & 0xfff) << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
}
fn s_type(op: u32, f3: u32, rs1: u8, rs2: u8, imm: i32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25
        | (rs2 as u32) << 20
        | (rs1 as u32) << 15
        | f3 << 12
        | (imm & 0x1f) << 7
        | op
}
fn b_type(f3: u32, rs1: u8, rs2: u8, off: i32) -> u32 {
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | (rs2 as u32) << 20
        | (rs1 as u32) << 15
        | f3 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}
fn j_type(rd: u8, off: i32) -> u32 {
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o >> 12 & 0xff) << 12
        | (rd as u32) << 7
        | 0x6f
}
fn addi(rd: u8, rs1: u8, imm: i32) -> u32 {
    i_type(0x13, 0, rd, rs1, imm)
}

/// `c.beqz`/`c.bnez` (f3 6/7) with `rs1'` in x8..x15.
fn cb_type(f3: u16, rs1: u8, off: i32) -> u16 {
    let o = off as u32 as u16;
    f3 << 13
        | (o >> 8 & 1) << 12
        | (o >> 3 & 3) << 10
        | ((rs1 - 8) as u16) << 7
        | (o >> 6 & 3) << 5
        | (o >> 1 & 3) << 3
        | (o >> 5 & 1) << 2
        | 1
}
fn cj_type(off: i32) -> u16 {
    let o = off as u32 as u16;
    5 << 13
        | (o >> 11 & 1) << 12
        | (o >> 4 & 1) << 11
        | (o >> 8 & 3) << 9
        | (o >> 10 & 1) << 8
        | (o >> 6 & 1) << 7
        | (o >> 7 & 1) << 6
        | (o >> 1 & 7) << 3
        | (o >> 5 & 1) << 2
        | 1
}

#[derive(Clone, Copy)]
enum Fix {
    Branch(u32),
    Jal(u32),
    CBranch(u16, u8),
    CJ,
}

/// A tiny assembler with forward and backward labels.
struct Asm {
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize, Fix)>,
}

impl Asm {
    fn new() -> Self {
        Asm { code: Vec::new(), labels: Vec::new(), fixups: Vec::new() }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn pos(&self) -> usize {
        self.code.len()
    }
    /// Emits a 32-bit instruction that must decode to `op`.
    fn w(&mut self, word: u32, op: Op) {
        let got = decode(word).map(|i| i.op);
        assert_eq!(got, Ok(op), "encoder produced {word:#010x}");
        self.code.extend_from_slice(&word.to_le_bytes());
    }
    /// Emits a compressed instruction that must decode to `op`.
    fn h(&mut self, half: u16, op: Op) {
        let got = decode(half as u32).map(|i| i.op);
        assert_eq!(got, Ok(op), "encoder produced {half:#06x}");
        self.code.extend_from_slice(&half.to_le_bytes());
    }
    fn branch(&mut self, f3: u32, rs1: u8, rs2: u8, l: usize) {
        self.fixups.push((self.pos(), l, Fix::Branch(b_type(f3, rs1, rs2, 0))));
        self.code.extend_from_slice(&[0; 4]);
    }
    fn jal(&mut self, rd: u8, l: usize) {
        self.fixups.push((self.pos(), l, Fix::Jal(j_type(rd, 0))));
        self.code.extend_from_slice(&[0; 4]);
    }
    fn cbranch(&mut self, f3: u16, rs1: u8, l: usize) {
        self.fixups.push((self.pos(), l, Fix::CBranch(f3, rs1)));
        self.code.extend_from_slice(&[0; 2]);
    }
    fn cj(&mut self, l: usize) {
        self.fixups.push((self.pos(), l, Fix::CJ));
        self.code.extend_from_slice(&[0; 2]);
    }
    fn finish(mut self) -> Vec<u8> {
        for &(at, l, fix) in &self.fixups {
            let off = self.labels[l].expect("bound label") as i32 - at as i32;
            match fix {
                Fix::Branch(base) => {
                    assert!((-4096..4096).contains(&off));
                    let w = base | b_type(0, 0, 0, off);
                    self.code[at..at + 4].copy_from_slice(&w.to_le_bytes());
                }
                Fix::Jal(base) => {
                    let w = base | j_type(0, off);
                    self.code[at..at + 4].copy_from_slice(&w.to_le_bytes());
                }
                Fix::CBranch(f3, rs1) => {
                    assert!((-256..256).contains(&off), "c.b offset {off}");
                    let h = cb_type(f3, rs1, off);
                    self.code[at..at + 2].copy_from_slice(&h.to_le_bytes());
                }
                Fix::CJ => {
                    assert!((-2048..2048).contains(&off));
                    self.code[at..at + 2].copy_from_slice(&cj_type(off).to_le_bytes());
                }
            }
        }
        self.code
    }
}

// ---------------------------------------------------------------------------------------------
// Generation.

struct Gen<'a> {
    rng: &'a mut Rng,
    a: Asm,
    /// Labels of the leaf functions.
    funcs: Vec<usize>,
}

/// The integer registers the current program draws from (a bit mask): all of them, or a few,
/// so that blocks reuse registers (exercising the translator's register caching and the
/// aliasing of destination and sources).
static POOL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

fn in_pool(r: u8) -> bool {
    POOL.load(std::sync::atomic::Ordering::Relaxed) & (1 << r) != 0
}

/// Integer registers random ops may write: everything but s0, s1 and ra.
fn dest(rng: &mut Rng) -> u8 {
    loop {
        let r = rng.below(32) as u8;
        if r != BASE && r != LOOP && r != 1 && in_pool(r) {
            return r;
        }
    }
}
/// Any integer register (of the pool, or x0) as a source.
fn src(rng: &mut Rng) -> u8 {
    loop {
        let r = rng.below(32) as u8;
        if r == 0 || in_pool(r) {
            return r;
        }
    }
}
/// Compressed-form destination x10..x15.
fn cdest(rng: &mut Rng) -> u8 {
    rng.range(10, 15) as u8
}

impl Gen<'_> {
    fn rm(&mut self) -> u32 {
        if self.rng.chance(2) {
            self.rng.pick(&[5, 6])
        } else {
            self.rng.pick(&[0, 1, 2, 3, 4, 7, 7, 7])
        }
    }

    /// One random non-control-flow instruction (or a short fixed sequence).
    fn op(&mut self) {
        let rng = &mut *self.rng;
        let (rd, rs1, rs2) = (dest(rng), src(rng), src(rng));
        match rng.below(20) {
            0..=3 => {
                let ops = [
                    (0x33, 0, 0, Op::Add),
                    (0x33, 0, 0x20, Op::Sub),
                    (0x33, 1, 0, Op::Sll),
                    (0x33, 2, 0, Op::Slt),
                    (0x33, 3, 0, Op::Sltu),
                    (0x33, 4, 0, Op::Xor),
                    (0x33, 5, 0, Op::Srl),
                    (0x33, 5, 0x20, Op::Sra),
                    (0x33, 6, 0, Op::Or),
                    (0x33, 7, 0, Op::And),
                    (0x33, 0, 1, Op::Mul),
                    (0x33, 1, 1, Op::Mulh),
                    (0x33, 2, 1, Op::Mulhsu),
                    (0x33, 3, 1, Op::Mulhu),
                    (0x33, 4, 1, Op::Div),
                    (0x33, 5, 1, Op::Divu),
                    (0x33, 6, 1, Op::Rem),
                    (0x33, 7, 1, Op::Remu),
                    (0x3b, 0, 0, Op::Addw),
                    (0x3b, 0, 0x20, Op::Subw),
                    (0x3b, 1, 0, Op::Sllw),
                    (0x3b, 5, 0, Op::Srlw),
                    (0x3b, 5, 0x20, Op::Sraw),
                    (0x3b, 0, 1, Op::Mulw),
                    (0x3b, 4, 1, Op::Divw),
                    (0x3b, 5, 1, Op::Divuw),
                    (0x3b, 6, 1, Op::Remw),
                    (0x3b, 7, 1, Op::Remuw),
                ];
                let (o, f3, f7, op) = rng.pick(&ops);
                self.a.w(r_type(o, f3, f7, rd, rs1, rs2), op);
            }
            4..=6 => {
                let imm = rng.range(-2048, 2047) as i32;
                let sh = rng.below(64) as i32;
                let shw = rng.below(32) as i32;
                let (w, op) = match rng.below(13) {
                    0 => (i_type(0x13, 0, rd, rs1, imm), Op::Addi),
                    1 => (i_type(0x13, 2, rd, rs1, imm), Op::Slti),
                    2 => (i_type(0x13, 3, rd, rs1, imm), Op::Sltiu),
                    3 => (i_type(0x13, 4, rd, rs1, imm), Op::Xori),
                    4 => (i_type(0x13, 6, rd, rs1, imm), Op::Ori),
                    5 => (i_type(0x13, 7, rd, rs1, imm), Op::Andi),
                    6 => (i_type(0x13, 1, rd, rs1, sh), Op::Slli),
                    7 => (i_type(0x13, 5, rd, rs1, sh), Op::Srli),
                    8 => (i_type(0x13, 5, rd, rs1, 0x400 | sh), Op::Srai),
                    9 => (i_type(0x1b, 0, rd, rs1, imm), Op::Addiw),
                    10 => (i_type(0x1b, 1, rd, rs1, shw), Op::Slliw),
                    11 => (i_type(0x1b, 5, rd, rs1, shw), Op::Srliw),
                    _ => (i_type(0x1b, 5, rd, rs1, 0x400 | shw), Op::Sraiw),
                };
                self.a.w(w, op);
            }
            7 => {
                let imm = (rng.next() as u32) & 0xffff_f000;
                if rng.chance(50) {
                    self.a.w(imm | (rd as u32) << 7 | 0x37, Op::Lui);
                } else {
                    self.a.w(imm | (rd as u32) << 7 | 0x17, Op::Auipc);
                }
            }
            8..=9 => self.mem(),
            10..=11 => self.compressed(),
            12..=15 => self.float(),
            16 => self.csr(),
            17 => self.atomic(),
            _ => {
                // A move of an edge value through lui/addi, so later ops see it.
                let v = rng.value() as i64 as i32;
                let lo = (v << 20) >> 20;
                let hi = (v.wrapping_sub(lo) as u32) & 0xffff_f000;
                self.a.w(hi | (rd as u32) << 7 | 0x37, Op::Lui);
                self.a.w(addi(rd, rd, lo), Op::Addi);
            }
        }
    }

    fn mem_base(&mut self) -> u8 {
        if self.rng.chance(1) {
            src(self.rng)
        } else {
            BASE
        }
    }

    fn mem(&mut self) {
        let base = self.mem_base();
        let imm = self.rng.range(-2048, 2047) as i32;
        let rd = dest(self.rng);
        let rs2 = src(self.rng);
        let loads = [
            (0, Op::Lb),
            (1, Op::Lh),
            (2, Op::Lw),
            (3, Op::Ld),
            (4, Op::Lbu),
            (5, Op::Lhu),
            (6, Op::Lwu),
        ];
        let stores = [(0, Op::Sb), (1, Op::Sh), (2, Op::Sw), (3, Op::Sd)];
        // Mostly aligned, sometimes anywhere (misaligned, page straddling).
        let align =
            |imm: i32, f3: u32| if f3 & 3 == 0 { imm } else { imm & !((1 << (f3 & 3)) - 1) };
        if self.rng.chance(50) {
            let (f3, op) = self.rng.pick(&loads);
            let imm = if self.rng.chance(80) { align(imm, f3) } else { imm };
            self.a.w(i_type(0x03, f3, rd, base, imm), op);
        } else {
            let (f3, op) = self.rng.pick(&stores);
            let imm = if self.rng.chance(80) { align(imm, f3) } else { imm };
            self.a.w(s_type(0x23, f3, base, rs2, imm), op);
        }
    }

    fn compressed(&mut self) {
        let rng = &mut *self.rng;
        let rd = cdest(rng);
        let rs2 = cdest(rng);
        let imm6 = rng.range(-32, 31) as i32;
        let cimm = |imm: i32| ((imm as u16 >> 5) & 1) << 12 | (imm as u16 & 0x1f) << 2;
        let p = |r: u8| (r - 8) as u16;
        match rng.below(14) {
            0 => self.a.h(cimm(imm6) | (rd as u16) << 7 | 1, Op::Addi),
            1 => self.a.h(1 << 13 | cimm(imm6) | (rd as u16) << 7 | 1, Op::Addiw),
            2 => self.a.h(2 << 13 | cimm(imm6) | (rd as u16) << 7 | 1, Op::Addi),
            3 => {
                let imm = if imm6 == 0 { 1 } else { imm6 };
                self.a.h(3 << 13 | cimm(imm) | (rd as u16) << 7 | 1, Op::Lui)
            }
            4 => {
                let sh = rng.range(1, 63) as u16;
                let (f2, op) = rng.pick(&[(0u16, Op::Srli), (1, Op::Srai)]);
                self.a.h(4 << 13 | (sh >> 5) << 12 | f2 << 10 | p(rd) << 7 | (sh & 31) << 2 | 1, op)
            }
            5 => self.a.h(4 << 13 | 2 << 10 | p(rd) << 7 | cimm(imm6) | 1, Op::Andi),
            6 => {
                let (bit12, f2, op) = rng.pick(&[
                    (0u16, 0u16, Op::Sub),
                    (0, 1, Op::Xor),
                    (0, 2, Op::Or),
                    (0, 3, Op::And),
                    (1, 0, Op::Subw),
                    (1, 1, Op::Addw),
                ]);
                self.a
                    .h(4 << 13 | bit12 << 12 | 3 << 10 | p(rd) << 7 | f2 << 5 | p(rs2) << 2 | 1, op)
            }
            7 => {
                let sh = rng.range(1, 63) as u16;
                self.a.h((sh >> 5) << 12 | (rd as u16) << 7 | (sh & 31) << 2 | 2, Op::Slli)
            }
            8 => {
                let s = rng.range(1, 31) as u16;
                self.a.h(4 << 13 | (rd as u16) << 7 | s << 2 | 2, Op::Add)
            }
            9 => {
                let s = rng.range(1, 31) as u16;
                self.a.h(4 << 13 | 1 << 12 | (rd as u16) << 7 | s << 2 | 2, Op::Add)
            }
            10 | 11 => {
                // c.lw / c.sw, base s0, offset 0..=124 (word aligned)
                let off = rng.below(32) as u16 * 4;
                let enc = (off >> 3 & 7) << 10 | (off >> 2 & 1) << 6 | (off >> 6 & 1) << 5;
                if rng.chance(50) {
                    self.a.h(2 << 13 | enc | p(BASE) << 7 | p(rd) << 2, Op::Lw)
                } else {
                    self.a.h(6 << 13 | enc | p(BASE) << 7 | p(rs2) << 2, Op::Sw)
                }
            }
            _ => {
                // c.ld / c.sd, base s0, offset 0..=248 (doubleword aligned)
                let off = rng.below(32) as u16 * 8;
                let enc = (off >> 3 & 7) << 10 | (off >> 6 & 3) << 5;
                if rng.chance(50) {
                    self.a.h(3 << 13 | enc | p(BASE) << 7 | p(rd) << 2, Op::Ld)
                } else {
                    self.a.h(7 << 13 | enc | p(BASE) << 7 | p(rs2) << 2, Op::Sd)
                }
            }
        }
    }

    fn float(&mut self) {
        let rm = self.rm();
        let rng = &mut *self.rng;
        let (fd, fa, fb, fc) =
            (rng.below(32) as u8, rng.below(32) as u8, rng.below(32) as u8, rng.below(32) as u8);
        let xd = dest(rng);
        let xs = src(rng);
        let d = rng.below(2) as u32; // 0 = single, 1 = double
        let opfp = |f7: u32, f3: u32, rd: u8, rs1: u8, rs2: u8| r_type(0x53, f3, f7, rd, rs1, rs2);
        let pick_d = |s: Op, dd: Op| if d == 1 { dd } else { s };
        match rng.below(12) {
            0..=3 => {
                let (f7, s, dd) = rng.pick(&[
                    (0x00, Op::FaddS, Op::FaddD),
                    (0x04, Op::FsubS, Op::FsubD),
                    (0x08, Op::FmulS, Op::FmulD),
                    (0x0c, Op::FdivS, Op::FdivD),
                ]);
                self.a.w(opfp(f7 | d, rm, fd, fa, fb), pick_d(s, dd));
            }
            4 => self.a.w(opfp(0x2c | d, rm, fd, fa, 0), pick_d(Op::FsqrtS, Op::FsqrtD)),
            5 => {
                let (o, s, dd) = rng.pick(&[
                    (0x43, Op::FmaddS, Op::FmaddD),
                    (0x47, Op::FmsubS, Op::FmsubD),
                    (0x4b, Op::FnmsubS, Op::FnmsubD),
                    (0x4f, Op::FnmaddS, Op::FnmaddD),
                ]);
                let w = (fc as u32) << 27
                    | d << 25
                    | (fb as u32) << 20
                    | (fa as u32) << 15
                    | rm << 12
                    | (fd as u32) << 7
                    | o;
                self.a.w(w, pick_d(s, dd));
            }
            6 => {
                let (f7, f3, s, dd) = rng.pick(&[
                    (0x10, 0, Op::FsgnjS, Op::FsgnjD),
                    (0x10, 1, Op::FsgnjnS, Op::FsgnjnD),
                    (0x10, 2, Op::FsgnjxS, Op::FsgnjxD),
                    (0x14, 0, Op::FminS, Op::FminD),
                    (0x14, 1, Op::FmaxS, Op::FmaxD),
                ]);
                self.a.w(opfp(f7 | d, f3, fd, fa, fb), pick_d(s, dd));
            }
            7 => {
                let (f3, s, dd) = rng.pick(&[
                    (2, Op::FeqS, Op::FeqD),
                    (1, Op::FltS, Op::FltD),
                    (0, Op::FleS, Op::FleD),
                ]);
                self.a.w(opfp(0x50 | d, f3, xd, fa, fb), pick_d(s, dd));
            }
            8 => {
                // float -> int
                let (r2, s, dd) = rng.pick(&[
                    (0, Op::FcvtWS, Op::FcvtWD),
                    (1, Op::FcvtWuS, Op::FcvtWuD),
                    (2, Op::FcvtLS, Op::FcvtLD),
                    (3, Op::FcvtLuS, Op::FcvtLuD),
                ]);
                self.a.w(opfp(0x60 | d, rm, xd, fa, r2), pick_d(s, dd));
            }
            9 => {
                // int -> float
                let (r2, s, dd) = rng.pick(&[
                    (0, Op::FcvtSW, Op::FcvtDW),
                    (1, Op::FcvtSWu, Op::FcvtDWu),
                    (2, Op::FcvtSL, Op::FcvtDL),
                    (3, Op::FcvtSLu, Op::FcvtDLu),
                ]);
                self.a.w(opfp(0x68 | d, rm, fd, xs, r2), pick_d(s, dd));
            }
            10 => match rng.below(6) {
                0 => self.a.w(opfp(0x20, rm, fd, fa, 1), Op::FcvtSD),
                1 => self.a.w(opfp(0x21, rm, fd, fa, 0), Op::FcvtDS),
                2 => self.a.w(opfp(0x70 | d, 1, xd, fa, 0), pick_d(Op::FclassS, Op::FclassD)),
                3 => self.a.w(opfp(0x70 | d, 0, xd, fa, 0), pick_d(Op::FmvXW, Op::FmvXD)),
                _ => self.a.w(opfp(0x78 | d, 0, fd, xs, 0), pick_d(Op::FmvWX, Op::FmvDX)),
            },
            _ => {
                let base = self.mem_base();
                let imm = self.rng.range(-2048, 2047) as i32;
                let imm = if self.rng.chance(80) { imm & !((4 << d) - 1) } else { imm };
                if self.rng.chance(50) {
                    self.a.w(
                        i_type(0x07, 2 + d, fd, base, imm),
                        if d == 1 { Op::Fld } else { Op::Flw },
                    );
                } else {
                    self.a.w(
                        s_type(0x27, 2 + d, base, fb, imm),
                        if d == 1 { Op::Fsd } else { Op::Fsw },
                    );
                }
            }
        }
    }

    fn csr(&mut self) {
        let rng = &mut *self.rng;
        let csr = rng.pick(&[1u32, 2, 3]);
        let rd = dest(rng);
        let rs1 = src(rng);
        let (f3, op) = rng.pick(&[
            (1, Op::Csrrw),
            (2, Op::Csrrs),
            (3, Op::Csrrc),
            (5, Op::Csrrwi),
            (6, Op::Csrrsi),
            (7, Op::Csrrci),
        ]);
        // Mostly keep frm valid so floating point keeps running.
        let rs1 = if f3 >= 5 && csr != 1 && rng.chance(80) { rng.below(5) as u8 } else { rs1 };
        self.a.w((csr << 20) | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | 0x73, op);
    }

    fn atomic(&mut self) {
        let rng = &mut *self.rng;
        let d = rng.below(2) as u32;
        let off = rng.range(-256, 255) as i32;
        let off = if rng.chance(95) { off & !((4 << d) - 1) } else { off };
        let rd = dest(rng);
        let rs2 = src(rng);
        let aqrl = rng.below(4) as u32;
        self.a.w(addi(AREG, BASE, off), Op::Addi);
        let amo = |f5: u32, rd: u8, rs2: u8| {
            f5 << 27
                | aqrl << 25
                | (rs2 as u32) << 20
                | (AREG as u32) << 15
                | (2 + d) << 12
                | (rd as u32) << 7
                | 0x2f
        };
        if rng.chance(30) {
            // lr / (something) / sc, sometimes to another address
            let rd2 = dest(rng);
            self.a.w(amo(0x02, rd, 0), if d == 1 { Op::LrD } else { Op::LrW });
            if rng.chance(20) {
                self.a.w(addi(AREG, AREG, 8), Op::Addi);
            }
            self.a.w(amo(0x03, rd2, rs2), if d == 1 { Op::ScD } else { Op::ScW });
        } else {
            let ops = [
                (0x01, Op::AmoswapW, Op::AmoswapD),
                (0x00, Op::AmoaddW, Op::AmoaddD),
                (0x04, Op::AmoxorW, Op::AmoxorD),
                (0x0c, Op::AmoandW, Op::AmoandD),
                (0x08, Op::AmoorW, Op::AmoorD),
                (0x10, Op::AmominW, Op::AmominD),
                (0x14, Op::AmomaxW, Op::AmomaxD),
                (0x18, Op::AmominuW, Op::AmominuD),
                (0x1c, Op::AmomaxuW, Op::AmomaxuD),
            ];
            let (f5, w, dd) = rng.pick(&ops);
            self.a.w(amo(f5, rd, rs2), if d == 1 { dd } else { w });
        }
    }

    /// A straight-line run of `n` random ops.
    fn ops(&mut self, n: u64) {
        for _ in 0..n {
            self.op();
        }
    }

    /// A forward conditional branch (or jump) over a few random ops.
    fn forward(&mut self) {
        let skip = self.a.label();
        let rs1 = src(self.rng);
        let rs2 = src(self.rng);
        match self.rng.below(5) {
            0 => {
                let c = cdest(self.rng);
                let f3 = self.rng.pick(&[6u16, 7]);
                self.a.cbranch(f3, c, skip);
            }
            1 => self.a.cj(skip),
            2 => {
                let rd = dest(self.rng);
                self.a.jal(rd, skip)
            }
            _ => {
                let f3 = self.rng.pick(&[0u32, 1, 4, 5, 6, 7]);
                self.a.branch(f3, rs1, rs2, skip)
            }
        }
        let n = self.rng.range(1, 5) as u64;
        self.ops(n);
        self.a.bind(skip);
    }

    /// A counted loop whose body may branch forward and call functions.
    fn counted_loop(&mut self) {
        let iterations = self.rng.range(1, 30) as i32;
        self.a.w(addi(LOOP, 0, iterations), Op::Addi);
        let top = self.a.label();
        self.a.bind(top);
        for _ in 0..self.rng.range(1, 3) {
            match self.rng.below(3) {
                0 => self.forward(),
                1 => self.call(),
                _ => {
                    let n = self.rng.range(1, 6) as u64;
                    self.ops(n)
                }
            }
        }
        self.a.w(addi(LOOP, LOOP, -1), Op::Addi);
        if self.rng.chance(50) {
            self.a.branch(1, LOOP, 0, top);
        } else {
            // bltu zero, s1: same condition, other encoding
            self.a.branch(6, 0, LOOP, top);
        }
    }

    fn call(&mut self) {
        if self.funcs.is_empty() {
            return;
        }
        let f = self.rng.pick(&self.funcs);
        self.a.jal(1, f);
    }
}

/// Generates one program: a main body, an exit, and a few leaf functions.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let pool = if rng.chance(50) {
        // x0, s0, s1 and a handful of others, always including x10..x15 for the
        // compressed forms.
        let mut m = 1 | 1 << BASE | 1 << LOOP | 0xfc00;
        for _ in 0..rng.range(0, 4) {
            m |= 1 << rng.range(2, 31);
        }
        m
    } else {
        u32::MAX
    };
    POOL.store(pool, std::sync::atomic::Ordering::Relaxed);
    let mut g = Gen { rng, a: Asm::new(), funcs: Vec::new() };
    let nfuncs = g.rng.below(4);
    g.funcs = (0..nfuncs).map(|_| g.a.label()).collect();
    for _ in 0..g.rng.range(3, 12) {
        match g.rng.below(6) {
            0 | 1 => {
                let n = g.rng.range(1, 10) as u64;
                g.ops(n)
            }
            2 => g.forward(),
            3 | 4 => g.counted_loop(),
            _ => g.call(),
        }
    }
    g.a.w(addi(17, 0, 94), Op::Addi);
    g.a.w(0x73, Op::Ecall);
    for f in g.funcs.clone() {
        g.a.bind(f);
        let n = g.rng.range(1, 8) as u64;
        g.ops(n);
        if g.rng.chance(50) {
            g.a.w(i_type(0x67, 0, 0, 1, 0), Op::Jalr);
        } else {
            g.a.h(0x8082, Op::Jalr); // c.jr ra
        }
    }
    g.a.finish()
}

// ---------------------------------------------------------------------------------------------
// Running.

fn setup(elf: &[u8], rng: &mut Rng) -> (Process, GuestThread) {
    let program = Arc::new(Program::parse(elf.to_vec()).expect("generated ELF parses"));
    let config =
        ProcessConfig { memory_size: 16 << 20, stack_size: 64 << 10, ..Default::default() };
    let (p, mut t) = loader::load(program, Arc::new(config), 1).expect("loads");
    for r in 1..32 {
        t.cpu.x[r] = rng.value();
    }
    t.cpu.x[BASE as usize] = BASE_VALUE;
    t.cpu.x[LOOP as usize] = 0;
    for r in 0..32 {
        t.cpu.f[r] = rng.fvalue();
    }
    t.cpu.frm = if rng.chance(5) { rng.range(5, 7) as u8 } else { rng.below(5) as u8 };
    t.cpu.fflags = rng.below(32) as u8;
    (p, t)
}

#[derive(Debug, PartialEq)]
struct Final {
    stop: StopReason,
    retired: u64,
    cpu: vm_exec_core::cpu::CpuState,
    data: Vec<u8>,
}

/// Runs to the end, in slices drawn from `slices` (empty: one big slice).
fn run(e: &mut dyn Executor, p: Process, mut t: GuestThread, slices: &mut Option<Rng>) -> Final {
    let mut retired = 0;
    let stop = loop {
        let fuel = match slices {
            Some(r) => r.range(0, 40) as u64,
            None => 1 << 20,
        };
        let r: RunResult = e.run(&mut t, &p, fuel);
        assert!(r.retired <= fuel, "{} retired {} > fuel {fuel}", e.name(), r.retired);
        retired += r.retired;
        if r.stop != StopReason::Preempted {
            break r.stop;
        }
        assert_eq!(r.retired, fuel, "{}: fuel not used up but the guest did not stop", e.name());
        assert!(retired < 10_000_000, "runaway program");
    };
    let mut data = vec![0; DATA_LEN];
    p.mem.read_bytes(DATA, &mut data).expect("data segment readable");
    Final { stop, retired, cpu: t.cpu, data }
}

fn case_count() -> u64 {
    std::env::var("VMX_RANDOM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2500)
}

#[test]
fn random_programs_agree_with_the_interpreter() {
    let seed = std::env::var("VMX_RANDOM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1234_5678u64);
    let mut rng = Rng(seed);
    // Long-lived engines (their caches see many processes; a small limit forces flushes).
    let small = JitConfig { cache_limit_bytes: 256 << 10, ..JitConfig::default() };
    let mut jit = JitEngine::with_config(small);
    let mut nochain = JitEngine::with_config(JitConfig { chaining: false, ..small });
    let mut hybrid = HybridEngine::try_with_config(small, 1).unwrap();
    let mut stops = std::collections::BTreeMap::<String, u64>::new();
    let mut total_insts = 0;
    for case in 0..case_count() {
        let code = generate(&mut rng);
        let mut data = vec![0u8; DATA_LEN];
        for b in data.iter_mut() {
            *b = rng.next() as u8;
        }
        let elf = write_executable(
            CODE,
            &[
                SegmentSpec { addr: CODE, bytes: &code, zero_tail: 0, flags: 5 },
                SegmentSpec { addr: DATA, bytes: &data, zero_tail: 0, flags: 6 },
            ],
        );
        let state_seed = rng.next();
        let fresh = || setup(&elf, &mut Rng(state_seed));
        let (p, t) = fresh();
        let want = run(&mut Interpreter::new(), p, t, &mut None);
        total_insts += want.retired;
        let kind = match &want.stop {
            StopReason::Finished(GuestExit::Signaled(s)) => format!("signal {}", s.signo),
            StopReason::Finished(GuestExit::Exited(_)) => "exit".to_string(),
            other => format!("{other:?}").split('(').next().unwrap_or_default().to_string(),
        };
        *stops.entry(kind).or_default() += 1;
        let slice_seed = rng.next();
        for (name, mut slices) in [
            ("jit", None),
            ("jit-nochain", None),
            ("jit-sliced", Some(Rng(slice_seed))),
            ("hybrid-sliced", Some(Rng(slice_seed ^ 1))),
        ] {
            let e: &mut dyn Executor = match name {
                "jit" | "jit-sliced" => &mut jit,
                "jit-nochain" => &mut nochain,
                _ => &mut hybrid,
            };
            let (p, t) = fresh();
            let got = run(e, p, t, &mut slices);
            if got != want {
                let mut msg =
                    format!("case {case} (seed {seed:#x}): {name} differs from the interpreter\n");
                if got.stop != want.stop || got.retired != want.retired {
                    msg += &format!(
                        "stop/retired: {name} {:?} {} vs interp {:?} {}\n",
                        got.stop, got.retired, want.stop, want.retired
                    );
                }
                for r in 0..32 {
                    if got.cpu.x[r] != want.cpu.x[r] {
                        msg += &format!(
                            "x{r}: {name} {:#x} vs interp {:#x}\n",
                            got.cpu.x[r], want.cpu.x[r]
                        );
                    }
                    if got.cpu.f[r] != want.cpu.f[r] {
                        msg += &format!(
                            "f{r}: {name} {:#x} vs interp {:#x}\n",
                            got.cpu.f[r], want.cpu.f[r]
                        );
                    }
                }
                if (got.cpu.pc, got.cpu.fflags, got.cpu.frm, got.cpu.reservation)
                    != (want.cpu.pc, want.cpu.fflags, want.cpu.frm, want.cpu.reservation)
                {
                    msg += &format!(
                        "pc/fflags/frm/reservation: {name} {:#x} {:#x} {} {:?} vs interp {:#x} {:#x} {} {:?}\n",
                        got.cpu.pc, got.cpu.fflags, got.cpu.frm, got.cpu.reservation,
                        want.cpu.pc, want.cpu.fflags, want.cpu.frm, want.cpu.reservation
                    );
                }
                if let Some(i) = (0..DATA_LEN).find(|&i| got.data[i] != want.data[i]) {
                    msg += &format!("data differs first at {:#x}\n", DATA + i as u64);
                }
                let words: Vec<String> = code.chunks(4).map(|c| format!("{:02x?}", c)).collect();
                msg += &format!("code ({} bytes): {}\n", code.len(), words.join(" "));
                panic!("{msg}");
            }
        }
    }
    eprintln!(
        "{} random programs, {} instructions, identical under interp, jit, jit-nochain, sliced jit and sliced hybrid; endings: {stops:?}",
        case_count(),
        total_insts
    );
    // The generator must reach the interesting endings, not just exit.
    assert!(stops.get("exit").copied().unwrap_or(0) > case_count() / 4, "{stops:?}");
    assert!(stops.keys().any(|k| k.starts_with("signal")), "{stops:?}");
}
