/*
 * malloc_churn: heap stress with content checks.
 *
 * Thousands of malloc/calloc/realloc/free operations of varied sizes (1 byte to
 * a few hundred KiB, so both the brk heap and glibc's mmap threshold are
 * crossed) driven by a fixed-seed PRNG.  Every block is filled with a pattern
 * derived from its slot and generation and verified before it is freed or
 * resized.  Then one 64 MiB block (glibc mmaps it) is touched on every page,
 * grown to 96 MiB with realloc (mremap), verified, and shrunk again.
 * Optional argv[1]: number of operations (default 20000).
 * Prints statistics and a checksum; exits 1 on any corruption.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

struct slot {
    unsigned char *p;
    size_t size;
    uint32_t tag;
};

static struct slot slots[SLOTS];
static int corrupt;

static unsigned char pat(uint32_t tag, size_t i) { return (unsigned char)((tag * 31u) ^ (i * 7u) ^ (i >> 8)); }

static void fill(struct slot *s, size_t from)
{
    for (size_t i = from; i < s->size; i++)
        s->p[i] = pat(s->tag, i);
}

static void verify(const struct slot *s, size_t upto, const char *when)
{
    for (size_t i = 0; i < upto; i++)
        if (s->p[i] != pat(s->tag, i)) {
            if (corrupt < 10)
                printf("CORRUPT %s: tag %" PRIu32 " size %zu byte %zu\n", when, s->tag, s->size, i);
            corrupt++;
            return;
        }
}

static size_t pick_size(void)
{
    uint64_t r = rng();
    switch (r % 16) {
    case 0: return 0;
    case 1: case 2: case 3: case 4: case 5: return 1 + (r >> 8) % 32;
    case 6: case 7: case 8: case 9: return 1 + (r >> 8) % 512;
    case 10: case 11: case 12: return 1 + (r >> 8) % 8192;
    case 13: case 14: return 1 + (r >> 8) % 65536;
    default: return ((r >> 8) % 8 == 0) ? 128 * 1024 + (r >> 16) % (384 * 1024) : 1 + (r >> 8) % 4096;
    }
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 20000;
    uint64_t n_malloc = 0, n_calloc = 0, n_realloc = 0, n_free = 0, bytes = 0;
    uint32_t next_tag = 1;

    for (long op = 0; op < ops; op++) {
        struct slot *s = &slots[rng() % SLOTS];
        uint64_t what = rng() % 10;
        if (s->p == NULL) {
            size_t sz = pick_size();
            if (what < 2) {
                s->p = calloc(1, sz ? sz : 1);
                n_calloc++;
                if (!s->p) { printf("calloc failed\n"); return 1; }
                for (size_t i = 0; i < sz; i++)
                    if (s->p[i]) { corrupt++; break; }
            } else {
                s->p = malloc(sz);
                n_malloc++;
                if (!s->p && sz) { printf("malloc failed\n"); return 1; }
                if (!s->p) s->p = malloc(1);
            }
            s->size = sz;
            s->tag = next_tag++;
            fill(s, 0);
            bytes += sz;
        } else if (what < 4) {
            size_t nsz = pick_size();
            if (nsz == 0) nsz = 1; /* realloc(p, 0) frees in glibc; keep it simple */
            verify(s, s->size, "before realloc");
            unsigned char *np = realloc(s->p, nsz);
            n_realloc++;
            if (!np) { printf("realloc failed\n"); return 1; }
            s->p = np;
            size_t keep = s->size < nsz ? s->size : nsz;
            verify(&(struct slot){np, nsz, s->tag}, keep, "after realloc");
            s->size = nsz;
            fill(s, keep);
            bytes += nsz;
        } else {
            verify(s, s->size, "before free");
            free(s->p);
            n_free++;
            s->p = NULL;
        }
    }
    uint64_t sum = 0;
    size_t live = 0, live_bytes = 0;
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) {
            verify(&slots[i], slots[i].size, "final");
            for (size_t j = 0; j < slots[i].size; j += 97)
                sum = sum * 131 + slots[i].p[j];
            live++;
            live_bytes += slots[i].size;
            free(slots[i].p);
            slots[i].p = NULL;
        }
    printf("ops=%ld malloc=%" PRIu64 " calloc=%" PRIu64 " realloc=%" PRIu64 " free=%" PRIu64 "\n",
           ops, n_malloc, n_calloc, n_realloc, n_free);
    printf("bytes requested=%" PRIu64 " live at end=%zu blocks/%zu bytes checksum=%016" PRIx64 "\n",
           bytes, live, live_bytes, sum);

    /* aligned allocations */
    for (size_t al = 16; al <= 65536; al *= 4) {
        void *p = NULL;
        int rc = posix_memalign(&p, al, 1000 + al);
        int aligned = rc == 0 && ((uintptr_t)p % al) == 0;
        memset(p, 0xab, 1000 + al);
        printf("posix_memalign(%zu): rc=%d aligned=%d\n", al, rc, aligned);
        if (!aligned) corrupt++;
        free(p);
    }
    void *ap = aligned_alloc(4096, 8192);
    printf("aligned_alloc(4096): aligned=%d\n", ((uintptr_t)ap % 4096) == 0);
    free(ap);

    /* one big block: 64 MiB, every page touched, then grown and shrunk */
    size_t big = 64u << 20;
    unsigned char *b = malloc(big);
    if (!b) { printf("64 MiB malloc failed\n"); return 1; }
    for (size_t off = 0; off < big; off += 4096)
        b[off] = (unsigned char)(off >> 12);
    b[big - 1] = 0x5a;
    uint64_t bsum = 0;
    for (size_t off = 0; off < big; off += 4096)
        bsum += b[off];
    printf("64MiB: page sum=%" PRIu64 " last=%#x\n", bsum, b[big - 1]);
    size_t bigger = 96u << 20;
    unsigned char *b2 = realloc(b, bigger);
    if (!b2) { printf("realloc to 96 MiB failed\n"); return 1; }
    uint64_t bsum2 = 0;
    for (size_t off = 0; off < big; off += 4096)
        bsum2 += b2[off];
    for (size_t off = big; off < bigger; off += 4096)
        b2[off] = 1;
    uint64_t extra = 0;
    for (size_t off = big; off < bigger; off += 4096)
        extra += b2[off];
    printf("96MiB: old pages sum=%" PRIu64 " last old=%#x new pages=%" PRIu64 "\n", bsum2,
           b2[big - 1], extra);
    if (bsum2 != bsum || b2[big - 1] != 0x5a) corrupt++;
    unsigned char *b3 = realloc(b2, 1u << 20);
    uint64_t bsum3 = 0;
    for (size_t off = 0; off < (1u << 20); off += 4096)
        bsum3 += b3[off];
    printf("shrunk to 1MiB: page sum=%" PRIu64 "\n", bsum3);
    free(b3);

    printf("malloc_churn: %s (%d corruption(s))\n", corrupt ? "FAIL" : "ok", corrupt);
    return corrupt ? 1 : 0;
}
