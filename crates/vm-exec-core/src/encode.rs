//! Encoding a few RV64 instructions, for tests and tools that generate small guest programs
//! (pair with [`crate::elf_writer`]). The decoder is the authority on what words mean; these
//! functions build the standard 32-bit forms with their immediates split as the spec lays
//! them out. Register arguments are register numbers (0..=31).

/// `a0`, the first argument and return value register.
pub const A0: u32 = 10;
/// `a1`.
pub const A1: u32 = 11;
/// `a2`.
pub const A2: u32 = 12;
/// `a7`, the syscall number register.
pub const A7: u32 = 17;
/// `t0`.
pub const T0: u32 = 5;
/// `t1`.
pub const T1: u32 = 6;
/// `t2`.
pub const T2: u32 = 7;

/// `ecall`.
pub const ECALL: u32 = 0x73;
/// `fence.i`.
pub const FENCE_I: u32 = 0x100f;

/// An R-type instruction.
pub fn r(op: u32, f3: u32, f7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

/// An I-type instruction (12-bit signed immediate).
pub fn i(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    (imm as u32) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}

/// `addi rd, rs1, imm`.
pub fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x13, 0, rd, rs1, imm)
}

/// `add rd, rs1, rs2`.
pub fn add(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 0, 0, rd, rs1, rs2)
}

/// `lui rd, imm20` (the upper 20 bits).
pub fn lui(rd: u32, imm20: u32) -> u32 {
    imm20 << 12 | rd << 7 | 0x37
}

/// `lw rd, imm(rs1)`.
pub fn lw(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x03, 2, rd, rs1, imm)
}

/// `sw rs2, imm(rs1)`.
pub fn sw(rs2: u32, rs1: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | 2 << 12 | (imm & 0x1f) << 7 | 0x23
}

/// `bne rs1, rs2, off` (offset from this instruction, even).
pub fn bne(rs1: u32, rs2: u32, off: i32) -> u32 {
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | 1 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}

/// `jal rd, off` (offset from this instruction, even).
pub fn jal(rd: u32, off: i32) -> u32 {
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o >> 12 & 0xff) << 12
        | rd << 7
        | 0x6f
}

/// `jalr rd, imm(rs1)`.
pub fn jalr(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x67, 0, rd, rs1, imm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::inst::Op;

    #[test]
    fn encodings_decode_to_what_they_say() {
        let d = |w| decode(w).unwrap();
        let x = d(addi(A0, T0, -7));
        assert_eq!((x.op, x.rd, x.rs1, x.imm), (Op::Addi, 10, 5, -7));
        let x = d(sw(T1, A1, -2048));
        assert_eq!((x.op, x.rs1, x.rs2, x.imm), (Op::Sw, 11, 6, -2048));
        let x = d(bne(T0, 0, -4096));
        assert_eq!((x.op, x.rs1, x.imm), (Op::Bne, 5, -4096));
        let x = d(jal(1, 0xf_fffe));
        assert_eq!((x.op, x.rd, x.imm), (Op::Jal, 1, 0xf_fffe));
        let x = d(lui(A2, 0xfffff));
        assert_eq!((x.op, x.imm), (Op::Lui, -4096));
        assert_eq!(d(jalr(0, 1, 0)).op, Op::Jalr);
        assert_eq!(d(lw(A0, A1, 8)).op, Op::Lw);
        assert_eq!(d(add(A0, A1, A2)).op, Op::Add);
        assert_eq!(d(ECALL).op, Op::Ecall);
        assert_eq!(d(FENCE_I).op, Op::FenceI);
    }
}
