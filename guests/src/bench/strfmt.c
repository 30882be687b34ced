/*
 * bench/strfmt: string formatting and parsing.
 *
 * Usage: strfmt [SCALE]   SCALE = number of rounds (default 25; 1 for a quick
 * test).  Each round formats 10,000 records with snprintf (ints in several
 * bases, padded strings, doubles with %.6f and %.9g), parses them back with
 * strtol/strtoul/strtod, checks the round trip and accumulates a checksum.
 * Build with -ffp-contract=off so native builds print the same result.
 *
 * guest-cflags: -ffp-contract=off
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 25;
    uint64_t checksum = 0, chars = 0;
    long mismatches = 0;
    char line[256];
    static const char *names[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"};
    uint64_t s = 88172645463325252ull;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 10000; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            long v = (long)(s >> 20) - (1L << 42);
            unsigned long u = (unsigned long)(s >> 3);
            double d = (double)(int64_t)(s >> 11) / 1048576.0 - 4e6;
            int n = snprintf(line, sizeof line, "%ld|%lx|%lo|%-8s|%12.6f|%.9g|%08d", v, u, u & 0xffffff,
                             names[s % 8], d, d * 1e-3, i);
            chars += (uint64_t)n;
            char *p = line, *end;
            long v2 = strtol(p, &end, 10);
            unsigned long u2 = strtoul(end + 1, &end, 16);
            unsigned long o2 = strtoul(end + 1, &end, 8);
            p = strchr(end + 1, '|');
            double d2 = strtod(p + 1, &end);
            double d3 = strtod(end + 1, &end);
            long i2 = strtol(end + 1, &end, 10);
            if (v2 != v || u2 != u || o2 != (u & 0xffffff) || i2 != i || *end != '\0')
                mismatches++;
            double rel = d2 - d;
            if (rel > 1e-6 || rel < -1e-6)
                mismatches++;
            checksum = checksum * 1099511628211ull ^ (uint64_t)v2 ^ (uint64_t)(int64_t)(d3 * 1000.0);
            for (int k = 0; k < n; k++)
                checksum += (unsigned char)line[k];
        }
    }
    printf("rounds=%ld chars=%llu mismatches=%ld checksum=%016llx last=\"%s\"\n", rounds,
           (unsigned long long)chars, mismatches, (unsigned long long)checksum, rounds ? line : "");
    return mismatches ? 1 : 0;
}
