//! The decoded form of one RV64GC instruction.
//!
//! Invariants:
//! - Every compressed (16-bit) instruction decodes to the base instruction it expands to, with
//!   `len == 2`; everything else has `len == 4`.
//! - Register fields hold architectural register numbers (0..=31). Integer and floating-point
//!   registers use the same fields; `Op` says which file each field names.
//! - `imm` holds the fully sign-extended immediate the instruction uses (branch and jump offsets
//!   relative to the instruction's own address, `lui`/`auipc` values already shifted left by 12,
//!   shift amounts). For the `Csr*` ops `imm` is the zero-extended 12-bit CSR number, and for
//!   `Csr*i` ops the 5-bit zero-extended immediate is in `rs1`.
//! - `rm` holds the rounding-mode field for floating-point ops that round (0..=7, 7 =
//!   dynamic; zero for sign-injection, min/max, comparisons, classify and moves, where that
//!   field selects the operation), the
//!   `aq << 1 | rl` bits for atomics, and `pred << 4 | succ` for `fence`.
//! - Fields an instruction does not use are zero, so two decodings of the same word compare
//!   equal.

/// Every operation of RV64GC (RV64IMAFDC + Zicsr + Zifencei) in user mode.
#[allow(missing_docs)] // The names are the mnemonics of the RISC-V unprivileged spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    // RV64I
    Lui,
    Auipc,
    Jal,
    Jalr,
    Beq,
    Bne,
    Blt,
    Bge,
    Bltu,
    Bgeu,
    Lb,
    Lh,
    Lw,
    Ld,
    Lbu,
    Lhu,
    Lwu,
    Sb,
    Sh,
    Sw,
    Sd,
    Addi,
    Slti,
    Sltiu,
    Xori,
    Ori,
    Andi,
    Slli,
    Srli,
    Srai,
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Addiw,
    Slliw,
    Srliw,
    Sraiw,
    Addw,
    Subw,
    Sllw,
    Srlw,
    Sraw,
    Fence,
    FenceI,
    Ecall,
    Ebreak,
    // Zicsr
    Csrrw,
    Csrrs,
    Csrrc,
    Csrrwi,
    Csrrsi,
    Csrrci,
    // M
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
    Mulw,
    Divw,
    Divuw,
    Remw,
    Remuw,
    // A
    LrW,
    ScW,
    AmoswapW,
    AmoaddW,
    AmoxorW,
    AmoandW,
    AmoorW,
    AmominW,
    AmomaxW,
    AmominuW,
    AmomaxuW,
    LrD,
    ScD,
    AmoswapD,
    AmoaddD,
    AmoxorD,
    AmoandD,
    AmoorD,
    AmominD,
    AmomaxD,
    AmominuD,
    AmomaxuD,
    // F
    Flw,
    Fsw,
    FmaddS,
    FmsubS,
    FnmsubS,
    FnmaddS,
    FaddS,
    FsubS,
    FmulS,
    FdivS,
    FsqrtS,
    FsgnjS,
    FsgnjnS,
    FsgnjxS,
    FminS,
    FmaxS,
    FcvtWS,
    FcvtWuS,
    FcvtLS,
    FcvtLuS,
    FcvtSW,
    FcvtSWu,
    FcvtSL,
    FcvtSLu,
    FmvXW,
    FmvWX,
    FeqS,
    FltS,
    FleS,
    FclassS,
    // D
    Fld,
    Fsd,
    FmaddD,
    FmsubD,
    FnmsubD,
    FnmaddD,
    FaddD,
    FsubD,
    FmulD,
    FdivD,
    FsqrtD,
    FsgnjD,
    FsgnjnD,
    FsgnjxD,
    FminD,
    FmaxD,
    FcvtSD,
    FcvtDS,
    FcvtWD,
    FcvtWuD,
    FcvtLD,
    FcvtLuD,
    FcvtDW,
    FcvtDWu,
    FcvtDL,
    FcvtDLu,
    FmvXD,
    FmvDX,
    FeqD,
    FltD,
    FleD,
    FclassD,
}

/// One decoded instruction. See the module documentation for the meaning of each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Inst {
    /// The operation.
    pub op: Op,
    /// Destination register (integer or floating point, as `op` says).
    pub rd: u8,
    /// First source register, or the 5-bit immediate of `Csr*i` ops.
    pub rs1: u8,
    /// Second source register.
    pub rs2: u8,
    /// Third source register (fused multiply-add only).
    pub rs3: u8,
    /// Rounding mode, atomic ordering bits, or fence sets (see module docs).
    pub rm: u8,
    /// Encoded length in bytes: 2 (compressed) or 4.
    pub len: u8,
    /// Sign-extended immediate (see module docs).
    pub imm: i32,
}

impl Inst {
    /// An instruction with every field zero except `op` and `len`.
    pub const fn new(op: Op, len: u8) -> Self {
        Inst { op, rd: 0, rs1: 0, rs2: 0, rs3: 0, rm: 0, len, imm: 0 }
    }
}

impl Op {
    /// True for instructions that end a decoded block: control transfers, `ecall`, `ebreak`
    /// and `fence.i` (every engine cuts blocks here, so they agree on block shape).
    pub fn ends_block(self) -> bool {
        use Op::*;
        matches!(self, Jal | Jalr | Beq | Bne | Blt | Bge | Bltu | Bgeu | Ecall | Ebreak | FenceI)
    }

    /// True for the FP operations whose `rs1` is an integer register (conversions from an
    /// integer, and `fmv.w.x`/`fmv.d.x`).
    pub fn fp_reads_int_rs1(self) -> bool {
        use Op::*;
        matches!(
            self,
            FcvtSW
                | FcvtSWu
                | FcvtSL
                | FcvtSLu
                | FmvWX
                | FcvtDW
                | FcvtDWu
                | FcvtDL
                | FcvtDLu
                | FmvDX
        )
    }

    /// True for the FP operations whose result is an integer register (conversions to an
    /// integer, `fmv.x.w`/`fmv.x.d`, compares, `fclass`).
    pub fn fp_writes_int_rd(self) -> bool {
        use Op::*;
        matches!(
            self,
            FcvtWS
                | FcvtWuS
                | FcvtLS
                | FcvtLuS
                | FmvXW
                | FeqS
                | FltS
                | FleS
                | FclassS
                | FcvtWD
                | FcvtWuD
                | FcvtLD
                | FcvtLuD
                | FmvXD
                | FeqD
                | FltD
                | FleD
                | FclassD
        )
    }

    /// True for the F and D operations other than loads and stores: the ones
    /// [`crate::fp::execute`] runs (the list is [`fp_compute_ops!`](crate::fp_compute_ops)).
    pub fn is_fp_compute(self) -> bool {
        matches!(self, crate::fp_compute_ops!())
    }

    /// True for LR, SC and the AMOs (the list is [`atomic_ops!`](crate::atomic_ops)).
    pub fn is_atomic(self) -> bool {
        matches!(self, crate::atomic_ops!())
    }

    /// True if the instruction's `rd` names an integer register it writes (every op except
    /// branches, stores, fences, `ecall`/`ebreak`, FP loads, and FP ops with an FP result).
    pub fn writes_int_rd(self) -> bool {
        use Op::*;
        let no_rd = matches!(
            self,
            Beq | Bne
                | Blt
                | Bge
                | Bltu
                | Bgeu
                | Sb
                | Sh
                | Sw
                | Sd
                | Fence
                | FenceI
                | Ecall
                | Ebreak
        );
        let fp_rd = matches!(self, Flw | Fld | Fsw | Fsd)
            || (self.is_fp_compute() && !self.fp_writes_int_rd());
        !no_rd && !fp_rd
    }
}

/// The pattern of every LR, SC and AMO operation, for `match` arms that hand them to
/// [`crate::atomic::execute`] (the interpreter) or its helper (the JIT): an instruction added
/// here reaches both engines. Usable wherever a pattern is: `atomic_ops!() => ...`.
#[macro_export]
macro_rules! atomic_ops {
    () => {
        $crate::inst::Op::LrW
            | $crate::inst::Op::LrD
            | $crate::inst::Op::ScW
            | $crate::inst::Op::ScD
            | $crate::inst::Op::AmoswapW
            | $crate::inst::Op::AmoaddW
            | $crate::inst::Op::AmoxorW
            | $crate::inst::Op::AmoandW
            | $crate::inst::Op::AmoorW
            | $crate::inst::Op::AmominW
            | $crate::inst::Op::AmomaxW
            | $crate::inst::Op::AmominuW
            | $crate::inst::Op::AmomaxuW
            | $crate::inst::Op::AmoswapD
            | $crate::inst::Op::AmoaddD
            | $crate::inst::Op::AmoxorD
            | $crate::inst::Op::AmoandD
            | $crate::inst::Op::AmoorD
            | $crate::inst::Op::AmominD
            | $crate::inst::Op::AmomaxD
            | $crate::inst::Op::AmominuD
            | $crate::inst::Op::AmomaxuD
    };
}

/// The pattern of every F and D operation other than loads and stores: the ones
/// [`crate::fp::execute`] runs. Usable wherever a pattern is: `fp_compute_ops!() => ...`.
#[macro_export]
macro_rules! fp_compute_ops {
    () => {
        $crate::inst::Op::FmaddS
            | $crate::inst::Op::FmsubS
            | $crate::inst::Op::FnmsubS
            | $crate::inst::Op::FnmaddS
            | $crate::inst::Op::FaddS
            | $crate::inst::Op::FsubS
            | $crate::inst::Op::FmulS
            | $crate::inst::Op::FdivS
            | $crate::inst::Op::FsqrtS
            | $crate::inst::Op::FsgnjS
            | $crate::inst::Op::FsgnjnS
            | $crate::inst::Op::FsgnjxS
            | $crate::inst::Op::FminS
            | $crate::inst::Op::FmaxS
            | $crate::inst::Op::FcvtWS
            | $crate::inst::Op::FcvtWuS
            | $crate::inst::Op::FcvtLS
            | $crate::inst::Op::FcvtLuS
            | $crate::inst::Op::FcvtSW
            | $crate::inst::Op::FcvtSWu
            | $crate::inst::Op::FcvtSL
            | $crate::inst::Op::FcvtSLu
            | $crate::inst::Op::FmvXW
            | $crate::inst::Op::FmvWX
            | $crate::inst::Op::FeqS
            | $crate::inst::Op::FltS
            | $crate::inst::Op::FleS
            | $crate::inst::Op::FclassS
            | $crate::inst::Op::FmaddD
            | $crate::inst::Op::FmsubD
            | $crate::inst::Op::FnmsubD
            | $crate::inst::Op::FnmaddD
            | $crate::inst::Op::FaddD
            | $crate::inst::Op::FsubD
            | $crate::inst::Op::FmulD
            | $crate::inst::Op::FdivD
            | $crate::inst::Op::FsqrtD
            | $crate::inst::Op::FsgnjD
            | $crate::inst::Op::FsgnjnD
            | $crate::inst::Op::FsgnjxD
            | $crate::inst::Op::FminD
            | $crate::inst::Op::FmaxD
            | $crate::inst::Op::FcvtSD
            | $crate::inst::Op::FcvtDS
            | $crate::inst::Op::FcvtWD
            | $crate::inst::Op::FcvtWuD
            | $crate::inst::Op::FcvtLD
            | $crate::inst::Op::FcvtLuD
            | $crate::inst::Op::FcvtDW
            | $crate::inst::Op::FcvtDWu
            | $crate::inst::Op::FcvtDL
            | $crate::inst::Op::FcvtDLu
            | $crate::inst::Op::FmvXD
            | $crate::inst::Op::FmvDX
            | $crate::inst::Op::FeqD
            | $crate::inst::Op::FltD
            | $crate::inst::Op::FleD
            | $crate::inst::Op::FclassD
    };
}

impl Op {
    /// Access width in bytes of an LR/SC or AMO; `None` for every other operation.
    pub fn atomic_width(self) -> Option<u64> {
        use Op::*;
        match self {
            LrW | ScW | AmoswapW | AmoaddW | AmoxorW | AmoandW | AmoorW | AmominW | AmomaxW
            | AmominuW | AmomaxuW => Some(4),
            LrD | ScD | AmoswapD | AmoaddD | AmoxorD | AmoandD | AmoorD | AmominD | AmomaxD
            | AmominuD | AmomaxuD => Some(8),
            _ => None,
        }
    }

    /// True if the instruction can write guest memory: integer and FP stores, SC and AMOs.
    pub fn writes_memory(self) -> bool {
        use Op::*;
        matches!(self, Sb | Sh | Sw | Sd | Fsw | Fsd)
            || (self.atomic_width().is_some() && !matches!(self, LrW | LrD))
    }
}

#[cfg(test)]
mod tests {
    use super::Op;
    use crate::decode::tests::ALL_OPS;

    /// `writes_int_rd` as it was written before the FP classification moved here: a
    /// negative list. The predicates must agree with it on every op.
    fn writes_int_rd_reference(op: Op) -> bool {
        use Op::*;
        !matches!(
            op,
            Beq | Bne
                | Blt
                | Bge
                | Bltu
                | Bgeu
                | Sb
                | Sh
                | Sw
                | Sd
                | Fence
                | FenceI
                | Ecall
                | Ebreak
                | Flw
                | Fld
                | Fsw
                | Fsd
                | FmaddS
                | FmsubS
                | FnmsubS
                | FnmaddS
                | FaddS
                | FsubS
                | FmulS
                | FdivS
                | FsqrtS
                | FsgnjS
                | FsgnjnS
                | FsgnjxS
                | FminS
                | FmaxS
                | FcvtSW
                | FcvtSWu
                | FcvtSL
                | FcvtSLu
                | FmvWX
                | FmaddD
                | FmsubD
                | FnmsubD
                | FnmaddD
                | FaddD
                | FsubD
                | FmulD
                | FdivD
                | FsqrtD
                | FsgnjD
                | FsgnjnD
                | FsgnjxD
                | FminD
                | FmaxD
                | FcvtSD
                | FcvtDS
                | FcvtDW
                | FcvtDWu
                | FcvtDL
                | FcvtDLu
                | FmvDX
        )
    }

    #[test]
    fn classification_is_consistent_on_every_op() {
        let mut fp = 0;
        for &op in ALL_OPS {
            assert_eq!(op.writes_int_rd(), writes_int_rd_reference(op), "{op:?}");
            assert_eq!(op.is_atomic(), op.atomic_width().is_some(), "{op:?}");
            let name = format!("{op:?}");
            if op.is_fp_compute() {
                fp += 1;
                assert!(name.starts_with('F'), "{op:?}");
                assert!(!matches!(op, Op::Flw | Op::Fld | Op::Fsw | Op::Fsd), "{op:?}");
            } else {
                assert!(!op.fp_reads_int_rs1() && !op.fp_writes_int_rd(), "{op:?}");
                let fp_memory = matches!(op, Op::Flw | Op::Fld | Op::Fsw | Op::Fsd);
                assert!(!name.starts_with('F') || name.starts_with("Fence") || fp_memory, "{op:?}");
            }
        }
        assert_eq!(fp, 58, "28 single and 30 double operations");
    }

    #[test]
    fn atomic_widths_and_memory_writers() {
        assert_eq!(Op::LrW.atomic_width(), Some(4));
        assert_eq!(Op::AmomaxuD.atomic_width(), Some(8));
        assert_eq!(Op::Sd.atomic_width(), None);
        for op in [Op::Sb, Op::Fsd, Op::ScW, Op::AmoaddD] {
            assert!(op.writes_memory(), "{op:?}");
        }
        for op in [Op::LrD, Op::Ld, Op::Fld, Op::Ecall, Op::Add] {
            assert!(!op.writes_memory(), "{op:?}");
        }
    }
}
