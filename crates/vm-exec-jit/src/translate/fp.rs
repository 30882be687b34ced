//! Floating-point instructions emitted inline (the fast paths that the default MXCSR
//! environment makes exact); everything else calls a helper.

use super::*;

impl Emitter<'_> {
    /// Whether `i` has an inline fast path: its rounding mode must be round-to-nearest-even
    /// (statically, or dynamically checked), or round-towards-zero for conversions to
    /// integers.
    pub(super) fn fast_fp_applies(&self, i: &Inst) -> bool {
        match i.op {
            Op::FcvtWD | Op::FcvtLD => i.rm == 1,
            _ => i.rm == 0 || i.rm == 7,
        }
    }

    /// Inline SSE code for the hot double-precision operations, exact in results and flags.
    ///
    /// The host computes in its default environment (round to nearest even, exceptions
    /// masked), so the fast path only runs when that gives the RISC-V answer and the
    /// accrued flags need no update: `fflags` already has NX (so inexactness needs no
    /// detection), a dynamic rounding mode is RNE, and the result shows that no other
    /// exception happened: finite for add/sub/sqrt (a subnormal sum is exact, so it cannot
    /// underflow), finite and normal for mul/div (a tiny or zero product may have
    /// underflowed), and not the x86 "integer indefinite" for conversions to integers
    /// (out of range or NaN). Finite operands are implied by a finite result for add, sub,
    /// mul and sqrt, and an infinite or NaN operand of div gives a zero, infinite or NaN
    /// result, which also leaves the fast path. Otherwise the generic helper recomputes
    /// from the unchanged operands.
    pub(super) fn fast_fp(&mut self, i: &Inst, idx: u32, ipc: u64) {
        use Op::*;
        let slow = self.label();
        let done = self.label();
        dynasm!(self.ops ; .arch x64 ; test BYTE [r15 + FFLAGS_OFF], 1 ; jz =>slow);
        if i.rm == 7 {
            dynasm!(self.ops ; .arch x64 ; cmp BYTE [r15 + FRM_OFF], 0 ; jne =>slow);
        }
        let (a, b) = (f_off(i.rs1), f_off(i.rs2));
        match i.op {
            FaddD | FsubD | FmulD | FdivD | FsqrtD => {
                dynasm!(self.ops ; .arch x64 ; movq xmm0, QWORD [r15 + a]);
                match i.op {
                    FaddD => dynasm!(self.ops ; .arch x64 ; addsd xmm0, QWORD [r15 + b]),
                    FsubD => dynasm!(self.ops ; .arch x64 ; subsd xmm0, QWORD [r15 + b]),
                    FmulD => dynasm!(self.ops ; .arch x64 ; mulsd xmm0, QWORD [r15 + b]),
                    FdivD => dynasm!(self.ops ; .arch x64 ; divsd xmm0, QWORD [r15 + b]),
                    _ => dynasm!(self.ops ; .arch x64 ; sqrtsd xmm0, xmm0),
                }
                dynasm!(self.ops
                    ; .arch x64
                    ; movq rax, xmm0
                    ; mov rcx, rax
                    ; shr rcx, 52
                    ; and ecx, 0x7ff
                );
                if matches!(i.op, FmulD | FdivD) {
                    // exponent field in 1..=0x7fe: normal and finite
                    dynasm!(self.ops ; .arch x64 ; dec ecx ; cmp ecx, 0x7fd ; ja =>slow);
                } else {
                    dynasm!(self.ops ; .arch x64 ; cmp ecx, 0x7ff ; je =>slow);
                }
                dynasm!(self.ops ; .arch x64 ; mov QWORD [r15 + f_off(i.rd)], rax);
            }
            FcvtDW | FcvtDL => {
                self.ld(Rq::RAX, i.rs1);
                if i.op == FcvtDW {
                    dynasm!(self.ops ; .arch x64 ; cvtsi2sd xmm0, eax);
                } else {
                    dynasm!(self.ops ; .arch x64 ; cvtsi2sd xmm0, rax);
                }
                dynasm!(self.ops ; .arch x64 ; movq QWORD [r15 + f_off(i.rd)], xmm0);
            }
            _ => {
                // FcvtWD / FcvtLD with rtz
                if i.op == FcvtWD {
                    dynasm!(self.ops
                        ; .arch x64
                        ; cvttsd2si eax, QWORD [r15 + a]
                        ; cmp eax, i32::MIN
                        ; je =>slow
                        ; movsxd rax, eax
                    );
                } else {
                    dynasm!(self.ops
                        ; .arch x64
                        ; cvttsd2si rax, QWORD [r15 + a]
                        ; mov rcx, QWORD i64::MIN
                        ; cmp rax, rcx
                        ; je =>slow
                    );
                }
                self.st(i.rd, Rq::RAX);
            }
        }
        dynasm!(self.ops ; .arch x64 ; jmp =>done ; =>slow);
        self.status_call(helpers::fp_op as *const () as usize, i, idx, ipc, false);
        dynasm!(self.ops ; .arch x64 ; =>done);
    }
}
