#!/usr/bin/env python3
"""Generates the decoder test vectors in this directory, using GNU binutils as the oracle.

Needs riscv64-linux-gnu-{as,ld,objdump} (binutils 2.40 was used; override the tool names with
the RISCV_AS / RISCV_LD / RISCV_OBJDUMP environment variables). The tests only read the files
this script writes; they never run binutils. Run it from anywhere:

    python3 crates/vm-exec-core/testdata/decode/gen.py

Outputs (all deterministic):

vectors.txt
    One line per instruction: `HEX LEN OP RD RS1 RS2 RS3 RM IMM ; objdump text`. The fields are
    what `decode` must return (the `Inst` fields, `OP` being the `Op` variant name). Each case
    is constructed here from its fields: the generator writes the assembly text for those
    fields, the assembler encodes it, and objdump (`-M no-aliases,numeric`) must disassemble
    the encoding back to the same text -- two independent checks of the encoding. A few cases
    that the assembler cannot express (reserved rounding modes, fence fields that the spec says
    to ignore, ...) are written with `.insn`; objdump's disagreeing view of those is recorded
    after the `;` and explained in the preceding `#` comment.

illegal.txt
    `HEX ; text` lines: encodings the assembler produces for instructions that are not
    user-mode RV64GC (other extensions, the Q and Zfh formats, privileged instructions). They
    must all be illegal.

rvc_illegal.txt
    Every 16-bit word `h` (with `h & 3 != 3`) that objdump, given an ELF whose arch attribute is
    rv64gc, does NOT disassemble as an instruction, written as ranges per quadrant:
    `Q FIRST LAST` means every `h` with `h & 3 == Q` and `FIRST <= h <= LAST`. Two words that
    objdump does show are listed too (see REMARKS below) so that the file is exactly the set
    of reserved/illegal compressed encodings; the test re-checks them against objdump's view
    documented there.

rvc_expansions.bin
    For each 16-bit word `h` with `h & 3 != 3`, in increasing order, the little-endian u32
    encoding of the 32-bit instruction it expands to (0 for illegal words). The expansion is
    built from objdump's disassembly (`c.xxx` operands, `-M no-aliases,numeric`) with the
    expansion table of the RISC-V spec and encoded by the assembler with `-march=rv64g`
    (no C, so nothing is re-compressed); objdump must then show the expected base instruction.

random32.txt
    Validity, according to objdump (rv64gc attribute), of 65536 pseudo-random 32-bit words. The
    words are produced by the xorshift64 generator that `random_words()` below and the Rust
    test both implement; the file holds one hex digit per 4 words (bit i of digit k = word
    4k+i is an instruction), 64 digits per line.
"""

import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
AS = os.environ.get("RISCV_AS", "riscv64-linux-gnu-as")
LD = os.environ.get("RISCV_LD", "riscv64-linux-gnu-ld")
OBJDUMP = os.environ.get("RISCV_OBJDUMP", "riscv64-linux-gnu-objdump")

TEXT_BASE = 0x1000000  # link address; leaves room for -1 MiB jal targets

# ----------------------------------------------------------------------------------------------
# Running binutils


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


LINE_RE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]+)\s+(.*)$")


def disassemble(src, march, link):
    """Assembles `src`; returns [(addr, bits, length, text)] from objdump, in order.

    `text` is normalized: tabs become one space, a branch/jump target is rewritten as an
    offset relative to the instruction (`.+16`, `.-4096`), and `<symbol>` suffixes dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        s = os.path.join(tmp, "t.s")
        o = os.path.join(tmp, "t.o")
        with open(s, "w") as f:
            f.write(src)
        run([AS, "-march=" + march, "-mno-relax", "-o", o, s])
        if link:
            e = os.path.join(tmp, "t.elf")
            emul = ["-m", "elf32lriscv"] if march.startswith("rv32") else []
            run([LD] + emul + ["--no-relax", "-Ttext=0x%x" % TEXT_BASE, "-e", "0x%x" % TEXT_BASE, "-o", e, o])
            o = e
        out = run([OBJDUMP, "-d", "-z", "-M", "no-aliases,numeric", o])
    res = []
    for line in out.splitlines():
        m = LINE_RE.match(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        hexs = m.group(2)
        text = m.group(3).strip()
        text = re.sub(r"\s+#.*$", "", text)  # objdump's address comments
        text = re.sub(r"\s*<[^>]*>$", "", text)
        text = re.sub(r"\s+", " ", text)
        parts = text.split(" ", 1)
        if parts[0] in PCREL_MNEMONICS:
            ops = parts[1].split(",")
            off = int(ops[-1], 16) - addr
            if off >= 1 << 63:
                off -= 1 << 64
            ops[-1] = ".%+d" % off
            text = parts[0] + " " + ",".join(ops)
        res.append((addr, int(hexs, 16), len(hexs) // 2, text))
    return res


PCREL_MNEMONICS = {"beq", "bne", "blt", "bge", "bltu", "bgeu", "jal",
                   "c.j", "c.beqz", "c.bnez", "c.jal"}

# ----------------------------------------------------------------------------------------------
# vectors.txt: cases constructed from their fields

FIELDS = ("rd", "rs1", "rs2", "rs3", "rm", "imm")
RM_NAMES = ["rne", "rtz", "rdn", "rup", "rmm", "unknown", "unknown", "dyn"]
CSR_NAMES = {0x000: "ustatus", 0x001: "fflags", 0x002: "frm", 0x003: "fcsr",
             0xC00: "cycle", 0xC01: "time", 0xC02: "instret", 0xC03: "hpmcounter3"}


class Case:
    def __init__(self, asm, op, length=4, expect=None, note=None, **fields):
        for k in fields:
            assert k in FIELDS, k
        self.asm = asm
        self.op = op
        self.length = length
        self.fields = {k: fields.get(k, 0) for k in FIELDS}
        # What objdump must print; None: asm text. `note` explains an expected disagreement.
        self.expect = asm if expect is None else expect
        self.note = note


cases = []


def add(asm, op, **kw):
    cases.append(Case(asm, op, **kw))


def x(n):
    return "x%d" % n


def f(n):
    return "f%d" % n


def off(n):
    return ".%+d" % n


REG3 = [(0, 0, 0), (1, 2, 3), (31, 30, 29), (5, 31, 0), (10, 11, 12), (0, 17, 31)]
REG2 = [(0, 0), (1, 2), (31, 30), (5, 31), (10, 0), (0, 17)]
IMM12 = [-2048, -1, 0, 1, 2047, 1234, -1365]

# --- RV64I
for rd in (0, 1, 31, 10):
    for imm20 in (0, 1, 0x7FFFF, 0x80000, 0xFFFFF, 0x12345):
        simm = ((imm20 << 12) ^ 0x80000000) - 0x80000000
        add("lui %s,0x%x" % (x(rd), imm20), "Lui", rd=rd, imm=simm)
        add("auipc %s,0x%x" % (x(rd), imm20), "Auipc", rd=rd, imm=simm)
for rd in (0, 1, 31):
    for o in (-1048576, -2, 0, 2, 1048574, 0x12344, -0x55556):
        add("jal %s,%s" % (x(rd), off(o)), "Jal", rd=rd, imm=o)
for rd, rs1 in REG2:
    for imm in (-2048, -1, 0, 1, 2047):
        add("jalr %s,%d(%s)" % (x(rd), imm, x(rs1)), "Jalr", rd=rd, rs1=rs1, imm=imm)
for m in ("beq", "bne", "blt", "bge", "bltu", "bgeu"):
    for (rs1, rs2, _) in REG3:
        for o in (-4096, -2, 0, 2, 4094, 16, -1234):
            add("%s %s,%s,%s" % (m, x(rs1), x(rs2), off(o)), m.capitalize(),
                rs1=rs1, rs2=rs2, imm=o)
for m in ("lb", "lh", "lw", "ld", "lbu", "lhu", "lwu"):
    for rd, rs1 in REG2:
        for imm in IMM12:
            add("%s %s,%d(%s)" % (m, x(rd), imm, x(rs1)), m.capitalize(), rd=rd, rs1=rs1, imm=imm)
for m in ("sb", "sh", "sw", "sd"):
    for rs2, rs1 in REG2:
        for imm in IMM12:
            add("%s %s,%d(%s)" % (m, x(rs2), imm, x(rs1)), m.capitalize(), rs1=rs1, rs2=rs2, imm=imm)
for m in ("addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"):
    for rd, rs1 in REG2:
        for imm in IMM12:
            add("%s %s,%s,%d" % (m, x(rd), x(rs1), imm), m.capitalize(), rd=rd, rs1=rs1, imm=imm)
for m, top in (("slli", 63), ("srli", 63), ("srai", 63), ("slliw", 31), ("srliw", 31), ("sraiw", 31)):
    for rd, rs1 in REG2:
        for sh in sorted({0, 1, 5, 31, top}):
            add("%s %s,%s,0x%x" % (m, x(rd), x(rs1), sh), m.capitalize(), rd=rd, rs1=rs1, imm=sh)
R_OPS = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
         "addw", "subw", "sllw", "srlw", "sraw",
         "mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
         "mulw", "divw", "divuw", "remw", "remuw"]
for m in R_OPS:
    for rd, rs1, rs2 in REG3:
        add("%s %s,%s,%s" % (m, x(rd), x(rs1), x(rs2)), m.capitalize(), rd=rd, rs1=rs1, rs2=rs2)


def fence_set(v):
    return "".join(c for c, bit in zip("iorw", (8, 4, 2, 1)) if v & bit) or "unknown"


for pred, succ in ((15, 15), (2, 1), (1, 2), (8, 4), (3, 3), (12, 12), (10, 5), (15, 1)):
    add("fence %s,%s" % (fence_set(pred), fence_set(succ)), "Fence", rm=pred << 4 | succ)
add("fence.tso", "Fence", rm=0x33,
    note="fence.tso (fm=1000, rw,rw): fm is ignored, so it decodes as fence rw,rw")
add(".insn i 0x0f, 0, x0, x0, 0x001", "Fence", rm=0x01, expect="fence unknown,w",
    note="fence with an empty predecessor/successor set: objdump prints 'unknown'; valid")
add(".insn i 0x0f, 0, x0, x0, 0x010", "Fence", rm=0x10, expect="fence w,unknown")
add(".insn i 0x0f, 0, x0, x0, 0x000", "Fence", rm=0x00, expect="fence unknown,unknown")
add(".insn i 0x0f, 0, x0, x0, 0x0a0", "Fence", rm=0xA0, expect="fence ir,unknown")
add(".insn i 0x0f, 0, x5, x6, 0x0ff", "Fence", rm=0xFF, expect=".4byte 0xff3028f",
    note="fence with nonzero rd/rs1 (reserved, must be ignored): objdump refuses it")
add(".insn i 0x0f, 0, x0, x0, -1793", "Fence", rm=0xFF, expect=".4byte 0x8ff0000f",
    note="fence with fm=1000 and pred/succ other than rw: fm is ignored; objdump refuses it")
add(".insn i 0x0f, 0, x0, x0, 0x7ff", "Fence", rm=0xFF, expect=".4byte 0x7ff0000f",
    note="fence with a reserved fm value: ignored as the spec requires; objdump refuses it")
add("fence.i", "FenceI")
add(".insn i 0x0f, 1, x1, x2, 1", "FenceI", expect=".4byte 0x11108f",
    note="fence.i with nonzero imm/rs1/rd: ignored, as qemu does; objdump refuses it")
add(".insn i 0x0f, 1, x31, x31, -1", "FenceI", expect=".4byte 0xffff9f8f")
add("ecall", "Ecall")
add("ebreak", "Ebreak")

# --- Zicsr
for csr in (0x000, 0x001, 0x002, 0x003, 0xC00, 0xC01, 0xC02, 0xC03, 0x123, 0x7FF, 0x800, 0xFFF):
    name = CSR_NAMES.get(csr, "0x%x" % csr)
    for m in ("csrrw", "csrrs", "csrrc"):
        for rd, rs1 in ((0, 0), (1, 2), (31, 31)):
            asm = "%s %s,%s,%s" % (m, x(rd), name, x(rs1))
            if asm == "csrrw x0,cycle,x0":
                add(asm, "Csrrw", imm=csr, expect="unimp",
                    note="csrrw x0,cycle,x0 is the canonical 'unimp': a valid csrrw that traps "
                         "when executed (cycle is read-only)")
            else:
                add(asm, m.capitalize(), rd=rd, rs1=rs1, imm=csr)
    for m in ("csrrwi", "csrrsi", "csrrci"):
        for rd, u in ((0, 0), (1, 1), (31, 31), (7, 16)):
            add("%s %s,%s,%d" % (m, x(rd), name, u), m.capitalize(), rd=rd, rs1=u, imm=csr)

# --- A
ORDER = (("", 0), (".aq", 2), (".rl", 1), (".aqrl", 3))
for w in ("w", "d"):
    W = w.upper()
    for sfx, rm in ORDER:
        for rd, rs1, rs2 in REG3:
            add("lr.%s%s %s,(%s)" % (w, sfx, x(rd), x(rs1)), "Lr" + W, rd=rd, rs1=rs1, rm=rm)
            for m in ("sc", "amoswap", "amoadd", "amoxor", "amoand", "amoor",
                      "amomin", "amomax", "amominu", "amomaxu"):
                add("%s.%s%s %s,%s,(%s)" % (m, w, sfx, x(rd), x(rs2), x(rs1)),
                    m.capitalize() + W, rd=rd, rs1=rs1, rs2=rs2, rm=rm)

# --- F and D
FREG3 = [(0, 0, 0), (1, 2, 3), (31, 30, 29), (5, 31, 0), (10, 11, 12)]
FREG4 = [(0, 0, 0, 0), (1, 2, 3, 4), (31, 30, 29, 28), (5, 31, 0, 17)]


def rm_suffix(rm):
    return "" if rm == 7 else "," + RM_NAMES[rm]


def fp_insn_r(funct7, rm, rd, rs1, rs2):
    return ".insn r 0x53, %d, 0x%x, x%d, x%d, x%d" % (rm, funct7, rd, rs1, rs2)


for p, P, fmt in (("s", "S", 0), ("d", "D", 1)):
    width = {"s": "w", "d": "d"}[p]
    for m in ("fl" + width, "fs" + width):
        for r, rs1 in REG2:
            for imm in IMM12:
                if m[1] == "l":
                    add("%s %s,%d(%s)" % (m, f(r), imm, x(rs1)), m.capitalize(), rd=r, rs1=rs1, imm=imm)
                else:
                    add("%s %s,%d(%s)" % (m, f(r), imm, x(rs1)), m.capitalize(), rs2=r, rs1=rs1, imm=imm)
    for m in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
        for rm in (0, 1, 2, 3, 4, 7):
            for rd, rs1, rs2, rs3 in FREG4:
                add("%s.%s %s,%s,%s,%s%s" % (m, p, f(rd), f(rs1), f(rs2), f(rs3), rm_suffix(rm)),
                    m.capitalize() + P, rd=rd, rs1=rs1, rs2=rs2, rs3=rs3, rm=rm)
    for funct7, m in ((0x00, "fadd"), (0x04, "fsub"), (0x08, "fmul"), (0x0C, "fdiv")):
        for rm in (0, 1, 2, 3, 4, 7):
            for rd, rs1, rs2 in FREG3:
                add("%s.%s %s,%s,%s%s" % (m, p, f(rd), f(rs1), f(rs2), rm_suffix(rm)),
                    m.capitalize() + P, rd=rd, rs1=rs1, rs2=rs2, rm=rm)
        for rm in (5, 6):
            add(fp_insn_r(funct7 | fmt, rm, 1, 2, 3), m.capitalize() + P, rd=1, rs1=2, rs2=3, rm=rm,
                expect="%s.%s f1,f2,f3,unknown" % (m, p),
                note="reserved rounding modes are kept; the executor rejects them")
    for rm in (0, 1, 2, 3, 4, 7):
        for rd, rs1, _ in FREG3:
            add("fsqrt.%s %s,%s%s" % (p, f(rd), f(rs1), rm_suffix(rm)), "Fsqrt" + P, rd=rd, rs1=rs1, rm=rm)
    add(fp_insn_r(0x2C | fmt, 6, 1, 2, 0), "Fsqrt" + P, rd=1, rs1=2, rm=6,
        expect="fsqrt.%s f1,f2,unknown" % p)
    for m in ("fsgnj", "fsgnjn", "fsgnjx", "fmin", "fmax"):
        for rd, rs1, rs2 in FREG3:
            add("%s.%s %s,%s,%s" % (m, p, f(rd), f(rs1), f(rs2)), m.capitalize() + P,
                rd=rd, rs1=rs1, rs2=rs2)
    for m in ("feq", "flt", "fle"):
        for rd, rs1, rs2 in FREG3:
            add("%s.%s %s,%s,%s" % (m, p, x(rd), f(rs1), f(rs2)), m.capitalize() + P,
                rd=rd, rs1=rs1, rs2=rs2)
    for rd, rs1, _ in FREG3:
        add("fclass.%s %s,%s" % (p, x(rd), f(rs1)), "Fclass" + P, rd=rd, rs1=rs1)
        add("fmv.x.%s %s,%s" % (width, x(rd), f(rs1)), "FmvX" + width.upper(), rd=rd, rs1=rs1)
        add("fmv.%s.x %s,%s" % (width, f(rd), x(rs1)), "Fmv" + width.upper() + "X", rd=rd, rs1=rs1)
    # Integer conversions. fcvt.d.w and fcvt.d.wu are exact: binutils 2.40 encodes them with
    # rm=0 and prints no rounding mode, and refuses other rm values (see below).
    for ity, I in (("w", "W"), ("wu", "Wu"), ("l", "L"), ("lu", "Lu")):
        for rm in (0, 1, 2, 3, 4, 7):
            for rd, rs1, _ in FREG3:
                add("fcvt.%s.%s %s,%s%s" % (ity, p, x(rd), f(rs1), rm_suffix(rm)),
                    "Fcvt" + I + P, rd=rd, rs1=rs1, rm=rm)
                if p == "d" and ity in ("w", "wu"):
                    if rm == 0:
                        add("fcvt.%s.%s %s,%s" % (p, ity, f(rd), x(rs1)), "Fcvt" + P + I,
                            rd=rd, rs1=rs1, rm=0)
                else:
                    add("fcvt.%s.%s %s,%s%s" % (p, ity, f(rd), x(rs1), rm_suffix(rm)),
                        "Fcvt" + P + I, rd=rd, rs1=rs1, rm=rm)
    add(fp_insn_r(0x60 | fmt, 5, 1, 2, 2), "FcvtL" + P, rd=1, rs1=2, rm=5,
        expect="fcvt.l.%s x1,f2,unknown" % p)
# fcvt.s.d rounds; fcvt.d.s is exact (binutils 2.40: rm=0, no rm operand).
for rm in (0, 1, 2, 3, 4, 7):
    for rd, rs1, _ in FREG3:
        add("fcvt.s.d %s,%s%s" % (f(rd), f(rs1), rm_suffix(rm)), "FcvtSD", rd=rd, rs1=rs1, rm=rm)
for rd, rs1, _ in FREG3:
    add("fcvt.d.s %s,%s" % (f(rd), f(rs1)), "FcvtDS", rd=rd, rs1=rs1, rm=0)
for rm, enc in ((1, 0x420110D3), (7, 0x420170D3), (5, 0x420150D3)):
    add(fp_insn_r(0x21, rm, 1, 2, 0), "FcvtDS", rd=1, rs1=2, rm=rm, expect=".4byte 0x%x" % enc,
        note="fcvt.d.s/fcvt.d.w/fcvt.d.wu with rm != 0: the encoding has an rm field and the "
             "spec does not reserve nonzero values (qemu accepts them); binutils 2.40 refuses them")
for rm, rs2, op, enc in ((7, 0, "FcvtDW", 0xD20170D3), (3, 1, "FcvtDWu", 0xD21130D3)):
    add(fp_insn_r(0x69, rm, 1, 2, rs2), op, rd=1, rs1=2, rm=rm, expect=".4byte 0x%x" % enc)

# --- C (explicit compressed forms; each decodes to its expansion with len=2)
C = dict(length=2)
for rd in (8, 9, 15):
    for imm in (4, 8, 16, 64, 512, 1020, 1016, 340):
        add("c.addi4spn %s,x2,%d" % (x(rd), imm), "Addi", rd=rd, rs1=2, imm=imm, **C)
for rd, rs1 in ((8, 9), (15, 8), (10, 15)):
    for imm in (0, 8, 248, 255 & ~7, 128, 56, 192):
        add("c.fld %s,%d(%s)" % (f(rd), imm, x(rs1)), "Fld", rd=rd, rs1=rs1, imm=imm, **C)
        add("c.ld %s,%d(%s)" % (x(rd), imm, x(rs1)), "Ld", rd=rd, rs1=rs1, imm=imm, **C)
        add("c.fsd %s,%d(%s)" % (f(rd), imm, x(rs1)), "Fsd", rs2=rd, rs1=rs1, imm=imm, **C)
        add("c.sd %s,%d(%s)" % (x(rd), imm, x(rs1)), "Sd", rs2=rd, rs1=rs1, imm=imm, **C)
    for imm in (0, 4, 124, 64, 60, 32):
        add("c.lw %s,%d(%s)" % (x(rd), imm, x(rs1)), "Lw", rd=rd, rs1=rs1, imm=imm, **C)
        add("c.sw %s,%d(%s)" % (x(rd), imm, x(rs1)), "Sw", rs2=rd, rs1=rs1, imm=imm, **C)
add("c.nop", "Addi", expect="c.addi x0,0", **C)
for imm in (1, 31, -32, -1):
    add("c.nop %d" % imm, "Addi", imm=imm, expect="c.addi x0,%d" % imm, **C,
        note="c.nop with a nonzero immediate is a HINT: it decodes as addi x0,x0,imm")
for rd in (0, 1, 31):
    for imm in (0, 1, 31, -32, -1) if rd else (5, -7):
        add("c.addi %s,%d" % (x(rd), imm), "Addi", rd=rd, rs1=rd, imm=imm, **C)
for rd in (1, 31, 10):
    for imm in (0, 1, 31, -32, -1):
        add("c.addiw %s,%d" % (x(rd), imm), "Addiw", rd=rd, rs1=rd, imm=imm, **C)
for rd in (0, 1, 31):
    for imm in (0, 1, 31, -32, -1):
        add("c.li %s,%d" % (x(rd), imm), "Addi", rd=rd, imm=imm, **C)
for imm in (16, -16, 496, -512, 32, 0x1f0, -0x150):
    add("c.addi16sp x2,%d" % imm, "Addi", rd=2, rs1=2, imm=imm, **C)
for rd in (0, 1, 3, 31):
    for imm20 in (1, 31, 0xFFFE0, 0xFFFFF, 0x10):
        simm = ((imm20 << 12) ^ 0x80000000) - 0x80000000
        add("c.lui %s,0x%x" % (x(rd), imm20), "Lui", rd=rd, imm=simm, **C)
for rd in (8, 15, 11):
    for sh in (1, 31, 32, 63):
        add("c.srli %s,0x%x" % (x(rd), sh), "Srli", rd=rd, rs1=rd, imm=sh, **C)
        add("c.srai %s,0x%x" % (x(rd), sh), "Srai", rd=rd, rs1=rd, imm=sh, **C)
    add("c.srli64 %s" % x(rd), "Srli", rd=rd, rs1=rd, imm=0, **C)
    add("c.srai64 %s" % x(rd), "Srai", rd=rd, rs1=rd, imm=0, **C)
    for imm in (0, 1, 31, -32, -1):
        add("c.andi %s,%d" % (x(rd), imm), "Andi", rd=rd, rs1=rd, imm=imm, **C)
for m in ("sub", "xor", "or", "and", "subw", "addw"):
    for rd, rs2 in ((8, 9), (15, 15), (10, 8)):
        add("c.%s %s,%s" % (m, x(rd), x(rs2)), m.capitalize(), rd=rd, rs1=rd, rs2=rs2, **C)
for o in (-2048, -2, 0, 2, 2046, 0x2AA, -0x556):
    add("c.j %s" % off(o), "Jal", imm=o, **C)
for rs1 in (8, 15):
    for o in (-256, -2, 0, 2, 254, 0xAA, -0x56):
        add("c.beqz %s,%s" % (x(rs1), off(o)), "Beq", rs1=rs1, imm=o, **C)
        add("c.bnez %s,%s" % (x(rs1), off(o)), "Bne", rs1=rs1, imm=o, **C)
for rd in (0, 1, 31):
    for sh in (1, 31, 32, 63):
        add("c.slli %s,0x%x" % (x(rd), sh), "Slli", rd=rd, rs1=rd, imm=sh, **C)
    add("c.slli64 %s" % x(rd), "Slli", rd=rd, rs1=rd, imm=0, **C)
for rd in (0, 1, 31):
    for imm in (0, 8, 504, 256, 248, 0x1A8):
        add("c.fldsp %s,%d(x2)" % (f(rd), imm), "Fld", rd=rd, rs1=2, imm=imm, **C)
        add("c.fsdsp %s,%d(x2)" % (f(rd), imm), "Fsd", rs1=2, rs2=rd, imm=imm, **C)
        add("c.sdsp %s,%d(x2)" % (x(rd), imm), "Sd", rs1=2, rs2=rd, imm=imm, **C)
        if rd:
            add("c.ldsp %s,%d(x2)" % (x(rd), imm), "Ld", rd=rd, rs1=2, imm=imm, **C)
    for imm in (0, 4, 252, 128, 124, 0xA8):
        add("c.swsp %s,%d(x2)" % (x(rd), imm), "Sw", rs1=2, rs2=rd, imm=imm, **C)
        if rd:
            add("c.lwsp %s,%d(x2)" % (x(rd), imm), "Lw", rd=rd, rs1=2, imm=imm, **C)
for r in (1, 2, 5, 31):
    add("c.jr %s" % x(r), "Jalr", rs1=r, **C)
    add("c.jalr %s" % x(r), "Jalr", rd=1, rs1=r, **C)
for rd, rs2 in ((1, 2), (31, 1), (0, 5), (10, 31), (2, 2)):
    add("c.mv %s,%s" % (x(rd), x(rs2)), "Add", rd=rd, rs2=rs2, **C)
    add("c.add %s,%s" % (x(rd), x(rs2)), "Add", rd=rd, rs1=rd, rs2=rs2, **C)
add("c.ebreak", "Ebreak", **C)

# RV32-only compressed forms: their encodings are other instructions in RV64C (c.ld, c.sd,
# c.ldsp, c.sdsp, c.addiw). Assembled with -march=rv32gc; the RV64C fields are computed from the
# encoding by `rv64c_fields_of_rv32_form`.
RV32 = ["c.flw f9,4(x10)", "c.fsw f15,124(x8)", "c.flwsp f1,252(x2)", "c.fswsp f31,4(x2)",
        "c.jal .+2046", "c.jal .-1000"]

# ----------------------------------------------------------------------------------------------


def format_vector(bits, length, op, fields, text):
    return "%0*x %d %s %s ; %s" % (length * 2, bits, length, op,
                                   " ".join(str(fields[k]) for k in FIELDS), text)


def gen_vectors():
    src = ".option norvc\n" + "".join(
        (".option rvc\n" if c.length == 2 else ".option norvc\n") + c.asm + "\n" for c in cases)
    dis = disassemble(src, "rv64gc", link=True)
    assert len(dis) == len(cases), (len(dis), len(cases))
    lines = []
    problems = 0
    seen_notes = set()
    for c, (_, bits, length, text) in zip(cases, dis):
        if length != c.length or text != c.expect:
            print("MISMATCH: %r -> %08x len %d %r, expected %r" % (c.asm, bits, length, text, c.expect))
            problems += 1
        if c.note and c.note not in seen_notes:
            seen_notes.add(c.note)
            lines.append("# " + c.note)
        lines.append(format_vector(bits, length, c.op, c.fields, text))
    # RV32-only compressed forms, assembled for rv32gc: decoded as RV64C.
    dis = disassemble("".join(a + "\n" for a in RV32), "rv32gc", link=True)
    assert len(dis) == len(RV32)
    lines.append("# RV32-only compressed forms (assembled with -march=rv32gc); in RV64C their slots "
                 "are c.ld/c.sd/c.ldsp/c.sdsp/c.addiw")
    for asm, (_, bits, length, text) in zip(RV32, dis):
        fields = rv64c_fields_of_rv32_form(asm, bits)
        assert fields["op"] != "Addiw" or fields["rd"] != 0, "pick a c.jal offset with rd != 0"
        lines.append(format_vector(bits, length, fields.pop("op"), fields, text + " (rv32)"))
    if problems:
        sys.exit("%d mismatches" % problems)
    return lines


def rv64c_fields_of_rv32_form(asm, h):
    """Fields of the RV64C instruction in the slot of an RV32-only encoding, by construction."""
    rlo = ((h >> 2) & 7) + 8
    rhi = ((h >> 7) & 7) + 8
    full = (h >> 7) & 31
    fields = {k: 0 for k in FIELDS}
    if asm.startswith("c.flwsp"):  # c.ldsp
        fields.update(op="Ld", rd=full, rs1=2,
                      imm=((h >> 7) & 0x20) | ((h >> 2) & 0x18) | ((h << 4) & 0x1C0))
    elif asm.startswith("c.fswsp"):  # c.sdsp
        fields.update(op="Sd", rs2=(h >> 2) & 31, rs1=2, imm=((h >> 7) & 0x38) | ((h >> 1) & 0x1C0))
    elif asm.startswith("c.flw"):  # c.ld
        fields.update(op="Ld", rd=rlo, rs1=rhi, imm=((h >> 7) & 0x38) | ((h << 1) & 0xC0))
    elif asm.startswith("c.fsw"):  # c.sd
        fields.update(op="Sd", rs2=rlo, rs1=rhi, imm=((h >> 7) & 0x38) | ((h << 1) & 0xC0))
    elif asm.startswith("c.jal"):  # c.addiw
        imm = ((h >> 7) & 0x20) | ((h >> 2) & 0x1F)
        fields.update(op="Addiw", rd=full, rs1=full, imm=imm - 64 if imm & 0x20 else imm)
    return fields


# ----------------------------------------------------------------------------------------------
# illegal.txt

ILLEGAL_MARCH = "rv64gcqv_zba_zbb_zbc_zbs_zfh_zawrs_zicbom_zicboz_zknd_zkne_zknh_zksh_zksed_zbkb_zbkx_h_svinval"
ILLEGAL_SRC = """
.option norvc
fadd.q f1,f2,f3
fadd.q f1,f2,f3,rtz
fsqrt.q f1,f2
flq f1,0(x2)
fsq f1,-8(x2)
fmadd.q f1,f2,f3,f4
fnmadd.q f1,f2,f3,f4
fcvt.s.q f1,f2
fcvt.q.d f1,f2
fcvt.w.q x1,f2
feq.q x1,f2,f3
fadd.h f1,f2,f3
flh f1,0(x2)
fsh f1,0(x2)
fmadd.h f1,f2,f3,f4
fmsub.h f1,f2,f3,f4
fcvt.s.h f1,f2
fcvt.h.s f1,f2
fcvt.d.h f1,f2
fmv.x.h x1,f2
fmv.h.x f1,x2
fclass.h x1,f2
sh1add x1,x2,x3
sh3add.uw x1,x2,x3
add.uw x1,x2,x3
slli.uw x1,x2,3
andn x1,x2,x3
orn x1,x2,x3
xnor x1,x2,x3
rol x1,x2,x3
rolw x1,x2,x3
rori x1,x2,3
roriw x1,x2,3
clz x1,x2
ctz x1,x2
cpop x1,x2
clzw x1,x2
sext.b x1,x2
sext.h x1,x2
zext.h x1,x2
rev8 x1,x2
orc.b x1,x2
max x1,x2,x3
minu x1,x2,x3
clmul x1,x2,x3
clmulh x1,x2,x3
clmulr x1,x2,x3
bset x1,x2,x3
bclri x1,x2,63
binv x1,x2,x3
bexti x1,x2,1
pack x1,x2,x3
packh x1,x2,x3
brev8 x1,x2
xperm8 x1,x2,x3
aes64ds x1,x2,x3
aes64ks1i x1,x2,1
sha256sig0 x1,x2
sha512sum1 x1,x2
sm3p0 x1,x2
sm4ed x1,x2,x3,1
wrs.nto
wrs.sto
cbo.zero (x1)
cbo.clean (x1)
cbo.flush (x1)
cbo.inval (x1)
vsetvli x1,x2,e32,m1,ta,ma
vsetvl x1,x2,x3
vadd.vv v1,v2,v3
vle32.v v1,(x2)
vse64.v v1,(x2)
vfadd.vv v1,v2,v3
hfence.vvma x1,x2
hfence.gvma x1,x2
hlv.w x1,(x2)
hsv.d x1,(x2)
sinval.vma x1,x2
sfence.w.inval
mret
sret
wfi
sfence.vma
sfence.vma x1,x2
dret
"""


def gen_illegal():
    lines = []
    for _, bits, length, text in disassemble(ILLEGAL_SRC, ILLEGAL_MARCH, link=False):
        assert length == 4, text
        lines.append("%08x ; %s" % (bits, text))
    # Zcb/Zcmp/Zcmop compressed encodings are not known to binutils 2.40; they are covered by
    # rvc_illegal.txt (quadrant 0 funct3=100, the c.subw/c.addw neighbours, c.lui with imm 0).
    return lines


# ----------------------------------------------------------------------------------------------
# rvc_illegal.txt and rvc_expansions.bin


def expand(text):
    """The base instruction (assembly text) that a `c.xxx` disassembly expands to."""
    m, _, ops = text.partition(" ")
    o = ops.split(",") if ops else []
    base = m[2:]
    if m == "c.addi4spn":
        return "addi %s,%s,%s" % (o[0], o[1], o[2])
    if m in ("c.fld", "c.lw", "c.ld", "c.fsd", "c.sw", "c.sd",
             "c.fldsp", "c.lwsp", "c.ldsp", "c.fsdsp", "c.swsp", "c.sdsp"):
        return "%s %s,%s" % (base.replace("sp", ""), o[0], o[1])
    if m in ("c.addi", "c.addiw", "c.andi", "c.srli", "c.srai", "c.slli",
             "c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw", "c.add"):
        return "%s %s,%s,%s" % (base, o[0], o[0], o[1])
    if m in ("c.srli64", "c.srai64", "c.slli64"):
        return "%s %s,%s,0x0" % (base[:-2], o[0], o[0])
    if m == "c.li":
        return "addi %s,x0,%s" % (o[0], o[1])
    if m == "c.addi16sp":
        return "addi x2,x2,%s" % o[1]
    if m == "c.lui":
        return "lui %s,%s" % (o[0], o[1])
    if m == "c.j":
        return "jal x0,%s" % o[0]
    if m == "c.beqz":
        return "beq %s,x0,%s" % (o[0], o[1])
    if m == "c.bnez":
        return "bne %s,x0,%s" % (o[0], o[1])
    if m == "c.jr":
        return "jalr x0,0(%s)" % o[0]
    if m == "c.jalr":
        return "jalr x1,0(%s)" % o[0]
    if m == "c.mv":
        return "add %s,x0,%s" % (o[0], o[1])
    if m == "c.ebreak":
        return "ebreak"
    raise ValueError("no expansion for %r" % text)


# Words objdump disassembles but that are reserved (see the Rust test, which repeats this).
REMARKS = {
    0x0000: "c.unimp",  # the all-zero word is defined to be illegal
    0x6101: "c.addi16sp x2,0",  # nzimm=0 is reserved
}


def gen_rvc():
    words = [h for h in range(0x10000) if h & 3 != 3]
    src = ".option rvc\n" + "".join(".insn 2, 0x%04x\n" % h for h in words)
    dis = disassemble(src, "rv64gc", link=False)
    assert len(dis) == len(words)
    valid = {}
    for h, (_, bits, length, text) in zip(words, dis):
        assert bits == h and length == 2
        if text.startswith(".2byte"):
            continue
        if h in REMARKS:
            assert text == REMARKS[h], (hex(h), text)
            continue
        valid[h] = text
    # Expansions, encoded without C.
    order = sorted(valid)
    exp_text = [expand(valid[h]) for h in order]
    dis = disassemble(".option norvc\n" + "".join(t + "\n" for t in exp_text), "rv64g", link=True)
    assert len(dis) == len(order)
    expansion = {}
    for h, want, (_, bits, length, text) in zip(order, exp_text, dis):
        if length != 4 or text != want:
            sys.exit("expansion of %04x (%s): %r gives %08x %r" % (h, valid[h], want, bits, text))
        expansion[h] = bits
    blob = b"".join(struct.pack("<I", expansion.get(h, 0)) for h in words)
    # Illegal ranges per quadrant.
    lines = []
    for q in range(3):
        qs = [h for h in words if h & 3 == q and h not in valid]
        start = prev = None
        for h in qs + [None]:
            if h is not None and prev is not None and h == prev + 4:
                prev = h
                continue
            if start is not None:
                lines.append("%d %04x %04x" % (q, start, prev))
            start = prev = h
    return lines, blob, len(valid)


# ----------------------------------------------------------------------------------------------
# random32.txt


MASK64 = (1 << 64) - 1
RANDOM_SEED = 0x9E3779B97F4A7C15
RANDOM_COUNT = 65536


def random_words():
    """The same sequence as `random_golden_words` in the Rust test."""
    s = RANDOM_SEED
    out = []
    for _ in range(RANDOM_COUNT):
        s ^= (s << 13) & MASK64
        s ^= s >> 7
        s ^= (s << 17) & MASK64
        w = s & 0xFFFFFFFF
        hi = s >> 32
        # Major opcode: one of the 28 with bits[1:0]=11 and bits[4:2]!=111.
        major = hi % 28
        opcode = ((major // 7) << 5) | ((major % 7) << 2) | 3
        w = (w & ~0x7F) | opcode
        # Narrow encodings need zero fields: clear rd, rs1, rs2 with probability 1/4 each.
        if (hi >> 8) & 3 == 0:
            w &= ~(31 << 7)
        if (hi >> 10) & 3 == 0:
            w &= ~(31 << 15)
        if (hi >> 12) & 3 == 0:
            w &= ~(31 << 20)
        if (hi >> 14) & 3 == 0:  # small rs2 values (fcvt, fsqrt, ...)
            w &= ~(28 << 20)
        out.append(w)
    return out


def gen_random():
    words = random_words()
    src = ".option norvc\n" + "".join(".insn 4, 0x%08x\n" % w for w in words)
    dis = disassemble(src, "rv64gc", link=False)
    assert len(dis) == len(words)
    bits = []
    for w, (_, b, length, text) in zip(words, dis):
        assert b == w and length == 4
        bits.append(0 if text.startswith(".4byte") else 1)
    digits = "".join("%x" % sum(bits[i + j] << j for j in range(4)) for i in range(0, len(bits), 4))
    return [digits[i:i + 64] for i in range(0, len(digits), 64)], sum(bits)


# ----------------------------------------------------------------------------------------------


def write(name, lines, header):
    with open(os.path.join(HERE, name), "w") as f:
        for h in header:
            f.write("# " + h + "\n")
        for line in lines:
            f.write(line + "\n")


def main():
    version = run([AS, "--version"]).splitlines()[0]
    gen = "generated by gen.py with %s; do not edit" % version
    v = gen_vectors()
    write("vectors.txt", v, [gen, "HEX LEN OP RD RS1 RS2 RS3 RM IMM ; objdump -M no-aliases,numeric"])
    il = gen_illegal()
    write("illegal.txt", il, [gen, "HEX ; instruction (not user-mode RV64GC)"])
    rl, blob, nvalid = gen_rvc()
    write("rvc_illegal.txt", rl, [gen, "QUADRANT FIRST LAST: reserved 16-bit words (step 4)"])
    with open(os.path.join(HERE, "rvc_expansions.bin"), "wb") as fh:
        fh.write(blob)
    rnd, nrnd = gen_random()
    write("random32.txt", rnd, [gen, "objdump validity of the xorshift words, 4 words per hex digit"])
    print("vectors: %d, illegal: %d, rvc valid: %d, random32 valid: %d of %d"
          % (sum(1 for l in v if not l.startswith("#")), len(il), nvalid, nrnd, RANDOM_COUNT))


if __name__ == "__main__":
    main()
