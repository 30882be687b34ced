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

    /// True if the instruction's `rd` names an integer register it writes (every op except
    /// branches, stores, fences, `ecall`/`ebreak`, FP loads, and FP ops with an FP result).
    pub fn writes_int_rd(self) -> bool {
        use Op::*;
        !matches!(
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
