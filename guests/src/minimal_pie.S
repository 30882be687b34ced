/*
 * minimal_pie: a position-independent static executable (ET_DYN without
 * PT_INTERP, what -static-pie produces; Debian's cross glibc ships no rcrt1.o,
 * so this one has no libc). The loader must place it at a base of its choosing;
 * everything is addressed pc-relatively (lla), so it needs no relocation.
 * Prints a line, checks that a pc-relative load sees initialized data, and
 * exits with status 9.
 *
 * guest-cflags: -nostdlib -nostartfiles -fPIE -Wl,-pie,--no-dynamic-linker
 */
    .section .rodata
msg:
    .ascii  "position-independent guest\n"
msg_end:

    .data
    .align 3
magic:
    .dword  0x1122334455667788

    .text
    .globl _start
    .type _start, @function
_start:
    lla     t0, magic
    ld      t1, 0(t0)
    li      t2, 0x1122334455667788
    bne     t1, t2, fail
    li      a0, 1
    lla     a1, msg
    lla     a2, msg_end
    sub     a2, a2, a1
    li      a7, 64                  /* __NR_write */
    ecall
    li      a0, 9
    li      a7, 94                  /* __NR_exit_group */
    ecall
fail:
    li      a0, 1
    li      a7, 94
    ecall
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
