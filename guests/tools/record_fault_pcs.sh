#!/bin/sh
# Records the guest pc at which each fault_kinds mode faults under qemu-riscv64, read
# through qemu's gdb stub with gdb-multiarch, into guests/expected/fault_kinds.qemu-pc
# ("MODE PC" per line). The fault address of every mode is fixed by the program (see
# guests/src/fault_kinds.c); qemu's gdb stub does not expose it.
# Usage (from the repository root): sh guests/tools/record_fault_pcs.sh
set -eu
out=guests/expected/fault_kinds.qemu-pc
: > "$out.tmp"
port=23456
for mode in load store rostore amo amoro fld fsd lbu straddle straddlest straddlewr; do
    qemu-riscv64 -g $port guests/bin/fault_kinds $mode > /dev/null 2>&1 &
    sleep 0.3
    pc=$(gdb-multiarch -q -batch -ex 'set architecture riscv:rv64' \
        -ex "target remote :$port" -ex c -ex 'printf "PC %#lx\n", $pc' \
        guests/bin/fault_kinds 2>/dev/null | sed -n 's/^PC //p')
    wait || true
    echo "$mode $pc" >> "$out.tmp"
    port=$((port + 1))
done
mv "$out.tmp" "$out"
cat "$out"
