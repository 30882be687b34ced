/*
 * minimal: the smallest possible guest. No libc, no C runtime: _start makes
 * two raw system calls, write(1, "minimal guest\n", 14) and exit_group(7).
 * Useful as the very first program to bring up an emulator (about a dozen
 * instructions, no auxv/TLS/relocation processing needed).
 *
 * guest-cflags: -nostdlib -nostartfiles
 */
    .section .rodata
msg:
    .ascii  "minimal guest\n"
msg_end:

    .text
    .globl _start
    .type _start, @function
_start:
    li      a0, 1                   /* fd = stdout */
    la      a1, msg
    la      a2, msg_end
    sub     a2, a2, a1              /* length */
    li      a7, 64                  /* __NR_write */
    ecall
    li      a0, 7                   /* status */
    li      a7, 94                  /* __NR_exit_group */
    ecall
    ebreak                          /* not reached */
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
