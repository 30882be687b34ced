/*
 * stream: moves many bytes through stdin and stdout (the distributed layer's
 * large-input and large-output tests use it).
 *
 *   stream          copies stdin to stdout
 *   stream gen N    writes N bytes of a fixed pattern to stdout: byte i is
 *                   (i * 131 + i / 4093) mod 256
 *
 * Either way it then prints to stderr the number of bytes written and their
 * FNV-1a 64-bit hash, so a test can check megabytes without keeping a copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t hash = 0xcbf29ce484222325ull;
static uint64_t total;

static void put(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ull;
    }
    total += n;
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            perror("stream: write");
            exit(2);
        }
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    static unsigned char buf[1 << 16];
    if (argc == 3 && strcmp(argv[1], "gen") == 0) {
        uint64_t n = strtoull(argv[2], NULL, 10), i = 0;
        while (i < n) {
            size_t k = n - i < sizeof buf ? (size_t)(n - i) : sizeof buf;
            for (size_t j = 0; j < k; j++)
                buf[j] = (unsigned char)((i + j) * 131 + (i + j) / 4093);
            put(buf, k);
            i += k;
        }
    } else if (argc == 1) {
        for (;;) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                perror("stream: read");
                return 2;
            }
            if (r == 0)
                break;
            put(buf, (size_t)r);
        }
    } else {
        fprintf(stderr, "usage: stream [gen N]\n");
        return 64;
    }
    fprintf(stderr, "stream: %" PRIu64 " bytes, fnv1a64 %016" PRIx64 "\n", total, hash);
    return 0;
}
