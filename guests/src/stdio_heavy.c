/*
 * stdio_heavy: a general libc exercise.
 *
 * printf/snprintf of integers of every width and base with flags, width and
 * precision, strings with padding/truncation, %n; sscanf and strtol family;
 * qsort/bsearch of structures; the <string.h> and <ctype.h> functions
 * (including overlapping memmove and strtok_r); gmtime/strftime on a fixed
 * timestamp (UTC only: the local time zone would depend on the host).
 * Everything is printed; checks that fail print FAIL and set exit status 1.
 */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* truncation and ignored flags below are deliberate */
#pragma GCC diagnostic ignored "-Wformat"
#pragma GCC diagnostic ignored "-Wformat-truncation"
#pragma GCC diagnostic ignored "-Wstringop-truncation"

static int failures;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                     \
        }                                                                      \
    } while (0)

static void integers(void)
{
    printf("== integer formatting ==\n");
    printf("[%d] [%i] [%u] [%x] [%X] [%o]\n", -42, 42, 42u, 0xbeefu, 0xbeefu, 8u);
    printf("[%d] [%d] [%u] [%x]\n", INT_MIN, INT_MAX, UINT_MAX, UINT_MAX);
    printf("[%ld] [%ld] [%lu] [%lx]\n", LONG_MIN, LONG_MAX, ULONG_MAX, ULONG_MAX);
    printf("[%lld] [%llu] [%jd] [%zu] [%td]\n", LLONG_MIN, ULLONG_MAX, INTMAX_MIN, (size_t)-1, (ptrdiff_t)-5);
    printf("[%hhd] [%hhu] [%hd] [%hu]\n", (signed char)-128, (unsigned char)255, (short)-32768, (unsigned short)65535);
    printf("[%hhd] [%hd] (truncation of 0x1ff / 0x18000)\n", 0x1ff, 0x18000);
    printf("[%5d] [%-5d] [%05d] [%+d] [% d] [%+5d] [%-+5d]\n", 42, 42, 42, 42, 42, -42, 42);
    printf("[%#x] [%#X] [%#o] [%#x] [%#o]\n", 255u, 255u, 8u, 0u, 0u);
    printf("[%.5d] [%8.5d] [%-8.5d] [%.0d] [%.0x]\n", 42, -42, 42, 0, 0u);
    static const char zero_and_precision[] = "[%08.3d] ('0' flag ignored with a precision)\n";
    printf(zero_and_precision, 7);
    printf("[%*d] [%-*d] [%.*d] [%*.*d]\n", 6, 1, 6, 2, 4, 3, 7, 5, 4);
    printf("[%" PRId64 "] [%" PRIu64 "] [%" PRIx64 "] [%016" PRIx64 "]\n", INT64_MIN, UINT64_MAX,
           (uint64_t)0x123456789abcdefull, (uint64_t)0xabcull);
    printf("[%c%c%c] [%%] [%5c] [%-3c|]\n", 'a', 'b', 'c', 'z', 'q');
    int n1 = 0, n2 = 0;
    printf("counting%n chars%n\n", &n1, &n2);
    printf("%%n gave %d and %d\n", n1, n2);
    CHECK(n1 == 8 && n2 == 14);
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%d-%s-%x", 123456789, "abcdefghijklmnop", 0xdeadbeefu);
    printf("snprintf returned %d, buffer \"%s\"\n", len, buf);
    CHECK(len == 35 && strlen(buf) == 31);
    len = snprintf(NULL, 0, "%lld", LLONG_MIN);
    printf("snprintf(NULL,0) length %d\n", len);
    CHECK(len == 20);
    char big[4096];
    len = snprintf(big, sizeof big, "%2000d|%-1000s|", 7, "left");
    printf("wide field: len=%d tail=\"%s\"\n", len, big + len - 6);
}

static void strings_fmt(void)
{
    printf("== string formatting ==\n");
    printf("[%s] [%10s] [%-10s] [%.3s] [%10.3s] [%-10.3s] [%.0s]\n", "hello", "hello", "hello", "hello",
           "hello", "hello", "hello");
    printf("[%s] [%.*s]\n", "", 4, "truncated");
    puts("puts adds a newline");
    fputs("fputs does not", stdout);
    fputc('\n', stdout);
    fwrite("fwrite 12345\n", 1, 13, stdout);
    char *heap = NULL;
    size_t hl = 0;
    FILE *mem = open_memstream(&heap, &hl);
    for (int i = 0; i < 100; i++)
        fprintf(mem, "%d,", i * i);
    fclose(mem);
    printf("open_memstream: %zu bytes, starts \"%.20s\", ends \"%s\"\n", hl, heap, heap + hl - 12);
    free(heap);
}

static void parsing(void)
{
    printf("== parsing ==\n");
    const char *nums[] = {"0", "-0", "42", "-42", "  +17xyz", "0x1f", "0777", "9223372036854775807",
                          "9223372036854775808", "-9223372036854775809", "18446744073709551615",
                          "18446744073709551616", "-1", "z", "", "0b101"};
    for (unsigned i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        char *e1, *e2;
        long v = strtol(nums[i], &e1, 0);
        unsigned long u = strtoul(nums[i], &e2, 0);
        printf("  %-24s strtol(0)=%ld used=%d  strtoul(0)=%lu used=%d  (int)strtol10=%d\n", nums[i], v,
               (int)(e1 - nums[i]), u, (int)(e2 - nums[i]), (int)strtol(nums[i], NULL, 10));
    }
    printf("  strtol base 36 \"zz\"=%ld base 2 \"1011\"=%ld base 16 \"FFff\"=%ld\n",
           strtol("zz", NULL, 36), strtol("1011", NULL, 2), strtol("FFff", NULL, 16));
    int a, b;
    unsigned x;
    char word[16];
    char c;
    int got = sscanf("  12 -7 ff token! rest", "%d %d %x %15[a-z]%c", &a, &b, &x, word, &c);
    printf("  sscanf got %d: %d %d %u \"%s\" '%c'\n", got, a, b, x, word, c);
    CHECK(got == 5 && a == 12 && b == -7 && x == 255 && c == '!');
    long long ll;
    got = sscanf("123456789012345 end", "%lld%n", &ll, &a);
    printf("  sscanf %%lld%%n: got=%d value=%lld consumed=%d\n", got, ll, a);
}

struct rec {
    int key;
    char name[12];
};

static int by_key(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

static int by_name_then_key(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : by_key(a, b);
}

static void sorting(void)
{
    printf("== qsort / bsearch ==\n");
    enum { N = 5000 };
    static struct rec r[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245 + 12345;
        r[i].key = (int)(s >> 8) % 100000 - 50000;
        snprintf(r[i].name, sizeof r[i].name, "n%03u", (s >> 4) % 500);
    }
    qsort(r, N, sizeof r[0], by_key);
    int sorted = 1;
    uint64_t sum = 0;
    for (int i = 1; i < N; i++)
        sorted &= r[i - 1].key <= r[i].key;
    for (int i = 0; i < N; i++)
        sum = sum * 31 + (uint32_t)r[i].key;
    printf("sorted by key: %s, first=%d last=%d checksum=%016" PRIx64 "\n", sorted ? "yes" : "no",
           r[0].key, r[N - 1].key, sum);
    CHECK(sorted);
    struct rec probe = {r[1234].key, ""};
    struct rec *hit = bsearch(&probe, r, N, sizeof r[0], by_key);
    printf("bsearch found key %d: %s\n", probe.key, hit && hit->key == probe.key ? "yes" : "no");
    probe.key = 1 << 30;
    printf("bsearch absent key: %s\n", bsearch(&probe, r, N, sizeof r[0], by_key) ? "found?" : "not found");
    qsort(r, N, sizeof r[0], by_name_then_key);
    printf("sorted by name: first=%s/%d last=%s/%d middle=%s/%d\n", r[0].name, r[0].key, r[N - 1].name,
           r[N - 1].key, r[N / 2].name, r[N / 2].key);
}

static int cmp_strp(const void *a, const void *b) { return strcasecmp(*(char *const *)a, *(char *const *)b); }

static void string_funcs(void)
{
    printf("== string.h / ctype.h ==\n");
    char buf[64];
    strcpy(buf, "Hello");
    strcat(buf, ", ");
    strncat(buf, "World!!!", 6);
    printf("strcpy/strcat/strncat: \"%s\" len=%zu\n", buf, strlen(buf));
    printf("strcmp: %d %d %d  strncmp(\"abcX\",\"abcY\",3)=%d\n", strcmp("abc", "abd") < 0,
           strcmp("b", "a") > 0, strcmp("same", "same"), strncmp("abcX", "abcY", 3));
    printf("strcasecmp(\"HeLLo\",\"hello\")=%d strncasecmp=%d\n", strcasecmp("HeLLo", "hello"),
           strncasecmp("ABCdef", "abcXYZ", 3));
    const char *hay = "the quick brown fox jumps over the lazy dog";
    printf("strchr 'q' at %td, strrchr 'o' at %td, strstr \"the\" (2nd) at %td, strstr miss=%s\n",
           strchr(hay, 'q') - hay, strrchr(hay, 'o') - hay, strstr(hay + 1, "the") - hay,
           strstr(hay, "cat") ? "found" : "NULL");
    printf("strspn=%zu strcspn=%zu strpbrk=%s\n", strspn("aaabbbccc", "ab"), strcspn(hay, "xyz"),
           strpbrk(hay, "jz"));
    char tok[] = "a,b;;c, d ,,e";
    char *save, *t;
    printf("strtok_r:");
    for (t = strtok_r(tok, ",; ", &save); t; t = strtok_r(NULL, ",; ", &save))
        printf(" [%s]", t);
    printf("\n");
    char ov[32] = "0123456789abcdef";
    memmove(ov + 4, ov, 10);
    printf("memmove overlapping forward: %s\n", ov);
    memmove(ov, ov + 6, 10);
    printf("memmove overlapping backward: %s\n", ov);
    unsigned char bytes[300];
    for (int i = 0; i < 300; i++)
        bytes[i] = (unsigned char)(i * 7);
    unsigned char copy[300];
    memcpy(copy, bytes, sizeof copy);
    copy[299] ^= 1;
    printf("memcmp equal prefix=%d, differ at end sign=%d, memchr 0x15 at %td\n", memcmp(copy, bytes, 299),
           memcmp(copy, bytes, 300) > 0 ? 1 : -1, (unsigned char *)memchr(bytes, 0x15, 300) - bytes);
    memset(copy + 10, 'x', 100);
    printf("memset count of 'x': %d\n", (int)(strspn((char *)copy + 10, "x")));
    /* unaligned and odd-length copies */
    static char src[200], dst[200];
    for (int i = 0; i < 200; i++)
        src[i] = (char)('A' + i % 26);
    uint64_t h = 0;
    for (int off = 0; off < 8; off++)
        for (int l = 0; l < 40; l++) {
            memset(dst, 0, sizeof dst);
            memcpy(dst + off, src + (7 - off), (size_t)l);
            for (int i = 0; i < 60; i++)
                h = h * 131 + (unsigned char)dst[i];
        }
    printf("unaligned memcpy checksum %016" PRIx64 "\n", h);
    char *d = strdup("duplicate me");
    char *nd = strndup("abcdefgh", 3);
    printf("strdup \"%s\" strndup \"%s\" strnlen=%zu\n", d, nd, strnlen("abcdefgh", 5));
    free(d);
    free(nd);
    char up[] = "Mixed Case 123 !?";
    for (char *p = up; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    printf("toupper: %s\n", up);
    int alpha = 0, digit = 0, space = 0, punct = 0, upper = 0;
    for (int ch = 0; ch < 128; ch++) {
        alpha += isalpha(ch) != 0;
        digit += isdigit(ch) != 0;
        space += isspace(ch) != 0;
        punct += ispunct(ch) != 0;
        upper += isupper(ch) != 0;
    }
    printf("ctype counts in ASCII: alpha=%d digit=%d space=%d punct=%d upper=%d\n", alpha, digit, space,
           punct, upper);
    CHECK(alpha == 52 && digit == 10 && space == 6 && punct == 32 && upper == 26);
    char *list[] = {"pear", "Apple", "banana", "apple", "Banana", "cherry", "apricot"};
    qsort(list, 7, sizeof list[0], cmp_strp);
    printf("strcasecmp-sorted:");
    for (int i = 0; i < 7; i++)
        printf(" %s", list[i]);
    printf("\n");
}

static void timefmt(void)
{
    printf("== gmtime / strftime (UTC) ==\n");
    const time_t stamps[] = {0, 951782400 /* 2000-02-29 */, 1234567890, 2147483647, 4102444800};
    for (unsigned i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        struct tm tm;
        gmtime_r(&stamps[i], &tm);
        char out[128];
        strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S %a %b %j %U %u", &tm);
        printf("  %ld -> %s (yday=%d wday=%d)\n", (long)stamps[i], out, tm.tm_yday, tm.tm_wday);
        time_t back = timegm(&tm);
        CHECK(back == stamps[i]);
    }
}

int main(void)
{
    integers();
    strings_fmt();
    parsing();
    sorting();
    string_funcs();
    timefmt();
    printf("stdio_heavy: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
