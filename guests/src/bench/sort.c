/*
 * bench/sort: quicksort and merge sort of 200,000 pseudo-random ints.
 *
 * Usage: sort [SCALE]   SCALE = number of rounds (default 40; 1 for a quick
 * test).  Each round regenerates the data from a round-dependent seed, sorts
 * one copy with a hand-written quicksort (median of three, insertion sort for
 * small ranges) and one with a top-down merge sort, verifies both are sorted
 * and equal, and folds them into a checksum.
 *
 * guest-cflags: -ffp-contract=off
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 200000 };
static int32_t a[N], b[N], tmp[N];

static void insertion(int32_t *v, long lo, long hi)
{
    for (long i = lo + 1; i <= hi; i++) {
        int32_t x = v[i];
        long j = i - 1;
        while (j >= lo && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void quicksort(int32_t *v, long lo, long hi)
{
    while (hi - lo > 16) {
        long mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) { int32_t t = v[mid]; v[mid] = v[lo]; v[lo] = t; }
        if (v[hi] < v[lo]) { int32_t t = v[hi]; v[hi] = v[lo]; v[lo] = t; }
        if (v[hi] < v[mid]) { int32_t t = v[hi]; v[hi] = v[mid]; v[mid] = t; }
        int32_t pivot = v[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                int32_t t = v[i]; v[i] = v[j]; v[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
    insertion(v, lo, hi);
}

static void mergesort_(int32_t *v, int32_t *t, long lo, long hi)
{
    if (hi - lo < 1)
        return;
    long mid = lo + (hi - lo) / 2;
    mergesort_(v, t, lo, mid);
    mergesort_(v, t, mid + 1, hi);
    long i = lo, j = mid + 1, k = lo;
    while (i <= mid && j <= hi)
        t[k++] = v[i] <= v[j] ? v[i++] : v[j++];
    while (i <= mid) t[k++] = v[i++];
    while (j <= hi) t[k++] = v[j++];
    memcpy(v + lo, t + lo, (size_t)(hi - lo + 1) * sizeof *v);
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    uint64_t checksum = 0;
    int bad = 0;
    for (long r = 0; r < rounds; r++) {
        uint64_t s = 0x123456789abcdefull + (uint64_t)r;
        for (long i = 0; i < N; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            a[i] = b[i] = (int32_t)(s >> 33) - (1 << 30);
        }
        quicksort(a, 0, N - 1);
        mergesort_(b, tmp, 0, N - 1);
        for (long i = 0; i < N; i++) {
            if ((i && a[i - 1] > a[i]) || a[i] != b[i])
                bad++;
            checksum = checksum * 31 + (uint32_t)a[i];
        }
    }
    printf("n=%d rounds=%ld checksum=%016llx %s\n", N, rounds, (unsigned long long)checksum,
           bad ? "UNSORTED" : "sorted");
    return bad ? 1 : 0;
}
