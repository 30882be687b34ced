//! Integer instructions emitted inline: register-register and immediate ALU operations,
//! multiplication and division (division never traps).

use super::*;

impl Emitter<'_> {
    /// Emits the common ALU operations straight into a cached destination register (no
    /// round trip through `rax`). Returns false, emitting nothing, where that does not
    /// apply: `rd` not cached, an operation not handled here, or `rd == rs2 != rs1` (the
    /// first move would clobber the second operand).
    pub(super) fn alu_direct(&mut self, i: &Inst) -> bool {
        use Op::*;
        let Some(hd) = self.alloc[i.rd as usize & 31] else { return false };
        let imm = i.imm;
        let sh = (imm & 63) as i8;
        let reg_form = matches!(i.op, Add | Sub | Xor | Or | And | Addw | Subw);
        let imm_form = matches!(
            i.op,
            Addi | Xori | Ori | Andi | Slli | Srli | Srai | Addiw | Slliw | Srliw | Sraiw
        );
        if !(reg_form || imm_form) {
            return false;
        }
        if reg_form && i.rs2 == i.rd && i.rs1 != i.rd {
            return false;
        }
        if i.rs1 != i.rd {
            self.ld(hd, i.rs1);
        }
        if imm_form {
            match i.op {
                Addi => {
                    if imm != 0 {
                        dynasm!(self.ops ; .arch x64 ; add Rq(hd), imm)
                    }
                }
                Xori => dynasm!(self.ops ; .arch x64 ; xor Rq(hd), imm),
                Ori => dynasm!(self.ops ; .arch x64 ; or Rq(hd), imm),
                Andi => dynasm!(self.ops ; .arch x64 ; and Rq(hd), imm),
                Slli => dynasm!(self.ops ; .arch x64 ; shl Rq(hd), sh),
                Srli => dynasm!(self.ops ; .arch x64 ; shr Rq(hd), sh),
                Srai => dynasm!(self.ops ; .arch x64 ; sar Rq(hd), sh),
                Slliw => {
                    dynasm!(self.ops ; .arch x64 ; shl Rd(hd), sh & 31 ; movsxd Rq(hd), Rd(hd))
                }
                Srliw => {
                    dynasm!(self.ops ; .arch x64 ; shr Rd(hd), sh & 31 ; movsxd Rq(hd), Rd(hd))
                }
                Sraiw => {
                    dynasm!(self.ops ; .arch x64 ; sar Rd(hd), sh & 31 ; movsxd Rq(hd), Rd(hd))
                }
                _ => dynasm!(self.ops ; .arch x64 ; add Rd(hd), imm ; movsxd Rq(hd), Rd(hd)),
            }
            return true;
        }
        let rs2 = i.rs2;
        let w = matches!(i.op, Addw | Subw);
        if rs2 == 0 {
            match i.op {
                And => dynasm!(self.ops ; .arch x64 ; xor Rd(hd), Rd(hd)),
                Addw | Subw => dynasm!(self.ops ; .arch x64 ; movsxd Rq(hd), Rd(hd)),
                _ => {}
            }
            return true;
        }
        if let Some(c) = self.alloc[rs2 as usize & 31] {
            match i.op {
                Add => dynasm!(self.ops ; .arch x64 ; add Rq(hd), Rq(c)),
                Sub => dynasm!(self.ops ; .arch x64 ; sub Rq(hd), Rq(c)),
                Xor => dynasm!(self.ops ; .arch x64 ; xor Rq(hd), Rq(c)),
                Or => dynasm!(self.ops ; .arch x64 ; or Rq(hd), Rq(c)),
                And => dynasm!(self.ops ; .arch x64 ; and Rq(hd), Rq(c)),
                Addw => dynasm!(self.ops ; .arch x64 ; add Rd(hd), Rd(c)),
                _ => dynasm!(self.ops ; .arch x64 ; sub Rd(hd), Rd(c)),
            }
        } else {
            let m = x_off(rs2);
            match i.op {
                Add => dynasm!(self.ops ; .arch x64 ; add Rq(hd), QWORD [r15 + m]),
                Sub => dynasm!(self.ops ; .arch x64 ; sub Rq(hd), QWORD [r15 + m]),
                Xor => dynasm!(self.ops ; .arch x64 ; xor Rq(hd), QWORD [r15 + m]),
                Or => dynasm!(self.ops ; .arch x64 ; or Rq(hd), QWORD [r15 + m]),
                And => dynasm!(self.ops ; .arch x64 ; and Rq(hd), QWORD [r15 + m]),
                Addw => dynasm!(self.ops ; .arch x64 ; add Rd(hd), DWORD [r15 + m]),
                _ => dynasm!(self.ops ; .arch x64 ; sub Rd(hd), DWORD [r15 + m]),
            }
        }
        if w {
            dynasm!(self.ops ; .arch x64 ; movsxd Rq(hd), Rd(hd));
        }
        true
    }

    /// `rax = rax op rcx` for the division family, with RISC-V results for a zero divisor and
    /// for signed overflow; never executes a trapping `div`/`idiv`.
    pub(super) fn divide(&mut self, op: Op) {
        use Op::*;
        match op {
            Div => dynasm!(self.ops
                ; .arch x64
                ; test rcx, rcx
                ; jz >zero
                ; cmp rcx, -1
                ; jne >normal
                ; neg rax
                ; jmp >done
                ; normal:
                ; cqo
                ; idiv rcx
                ; jmp >done
                ; zero:
                ; mov rax, -1
                ; done:
            ),
            Rem => dynasm!(self.ops
                ; .arch x64
                ; test rcx, rcx
                ; jz >done
                ; cmp rcx, -1
                ; jne >normal
                ; xor eax, eax
                ; jmp >done
                ; normal:
                ; cqo
                ; idiv rcx
                ; mov rax, rdx
                ; done:
            ),
            Divu => dynasm!(self.ops
                ; .arch x64
                ; test rcx, rcx
                ; jz >zero
                ; xor edx, edx
                ; div rcx
                ; jmp >done
                ; zero:
                ; mov rax, -1
                ; done:
            ),
            Remu => dynasm!(self.ops
                ; .arch x64
                ; test rcx, rcx
                ; jz >done
                ; xor edx, edx
                ; div rcx
                ; mov rax, rdx
                ; done:
            ),
            Divw => dynasm!(self.ops
                ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; cmp ecx, -1
                ; jne >normal
                ; neg eax
                ; movsxd rax, eax
                ; jmp >done
                ; normal:
                ; cdq
                ; idiv ecx
                ; movsxd rax, eax
                ; jmp >done
                ; zero:
                ; mov rax, -1
                ; done:
            ),
            Divuw => dynasm!(self.ops
                ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; xor edx, edx
                ; div ecx
                ; movsxd rax, eax
                ; jmp >done
                ; zero:
                ; mov rax, -1
                ; done:
            ),
            Remw => dynasm!(self.ops
                ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; cmp ecx, -1
                ; jne >normal
                ; xor eax, eax
                ; jmp >done
                ; normal:
                ; cdq
                ; idiv ecx
                ; movsxd rax, edx
                ; jmp >done
                ; zero:
                ; movsxd rax, eax
                ; done:
            ),
            _ => dynasm!(self.ops
                // Remuw
                ; .arch x64
                ; test ecx, ecx
                ; jz >zero
                ; xor edx, edx
                ; div ecx
                ; movsxd rax, edx
                ; jmp >done
                ; zero:
                ; movsxd rax, eax
                ; done:
            ),
        }
    }
}
