/*
 * fault_ill: executes an all-zero 16-bit instruction, which the RISC-V spec
 * reserves as permanently illegal, so the guest gets SIGILL.
 *
 * "before illegal instruction" is written with a raw write(2) first.  Under
 * qemu-riscv64 a shell sees exit status 132 (128 + 4) and qemu prints
 * "qemu: uncaught target signal 4 (Illegal instruction) - core dumped".
 */
    .section .rodata
msg:
    .ascii  "before illegal instruction\n"
msg_end:

    .text
    .globl main
    .type main, @function
main:
    addi    sp, sp, -16
    sd      ra, 8(sp)
    li      a0, 1                   /* fd */
    la      a1, msg                 /* buf */
    la      a2, msg_end
    sub     a2, a2, a1              /* count */
    li      a7, 64                  /* __NR_write */
    ecall
    .2byte  0x0000                  /* illegal instruction */
    /* not reached */
    li      a0, 0
    ld      ra, 8(sp)
    addi    sp, sp, 16
    ret
    .size main, . - main

    .section .note.GNU-stack, "", @progbits
