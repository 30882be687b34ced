/*
 * bench/sieve: sieve of Eratosthenes over [0, 4,000,000), repeated.
 *
 * Usage: sieve [SCALE]   SCALE = number of sieves (default 120; 1 for a quick
 * test).  Each pass uses a byte array and clears it again.  Prints the prime
 * count, the largest prime and a checksum (sum of primes mixed with the pass).
 *
 * guest-cflags: -ffp-contract=off
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIMIT = 4000000 };
static unsigned char composite[LIMIT];

int main(int argc, char **argv)
{
    long reps = argc > 1 ? atol(argv[1]) : 120;
    uint64_t checksum = 0;
    long count = 0, largest = 0;
    for (long r = 0; r < reps; r++) {
        memset(composite, 0, sizeof composite);
        composite[0] = composite[1] = 1;
        for (long i = 2; i * i < LIMIT; i++)
            if (!composite[i])
                for (long j = i * i; j < LIMIT; j += i)
                    composite[j] = 1;
        count = 0;
        uint64_t sum = 0;
        for (long i = 0; i < LIMIT; i++)
            if (!composite[i]) {
                count++;
                sum += (uint64_t)i;
                largest = i;
            }
        checksum = checksum * 1000003 + sum + (uint64_t)r;
    }
    printf("limit=%d reps=%ld primes=%ld largest=%ld checksum=%016llx\n", LIMIT, reps, count, largest,
           (unsigned long long)checksum);
    return count == 283146 || reps == 0 ? 0 : 1;
}
