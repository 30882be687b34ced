/*
 * bench/matmul: double-precision dense matrix product C = A * B (N = 128),
 * i-k-j loop order, repeated.
 *
 * Usage: matmul [SCALE]   SCALE = number of products (default 100; 1 for a quick
 * test).  A is perturbed between products so none can be skipped.  Prints the
 * sum, the trace and one element of the last C with %.17g.
 * Build with -ffp-contract=off (the guest build does) so the riscv64 and a
 * native build compute bit-identical results.
 *
 * guest-cflags: -ffp-contract=off
 */
#include <stdio.h>
#include <stdlib.h>

enum { N = 128 };
static double A[N][N], B[N][N], C[N][N];

int main(int argc, char **argv)
{
    long reps = argc > 1 ? atol(argv[1]) : 100;
    unsigned s = 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            s = s * 1664525u + 1013904223u;
            A[i][j] = (double)(s >> 8) / 16777216.0 - 0.5;
            s = s * 1664525u + 1013904223u;
            B[i][j] = (double)(s >> 8) / 16777216.0 - 0.5;
        }
    double total = 0;
    for (long r = 0; r < reps; r++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                C[i][j] = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < N; k++) {
                double a = A[i][k];
                for (int j = 0; j < N; j++)
                    C[i][j] += a * B[k][j];
            }
        double sum = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                sum += C[i][j];
        total += sum;
        A[r % N][(r * 7) % N] += 1.0 / 1024;
    }
    double trace = 0;
    for (int i = 0; i < N; i++)
        trace += C[i][i];
    printf("n=%d reps=%ld total=%.17g trace=%.17g c[17][42]=%.17g\n", N, reps, total, trace, C[17][42]);
    return 0;
}
