/*
 * args_env: process arguments, environment, stdin and exit status.
 *
 * Prints argc and every argv[i] with its length (non-printable bytes as \xHH,
 * backslash and double quote escaped), a fixed list of environment variables
 * via getenv() ("(unset)" when absent), the number of environ entries whose
 * name starts with "VMX_" (not the whole environment, which differs between
 * hosts), then reads all of stdin with read(2) and prints its length, line
 * count and FNV-1a checksum.
 *
 * Exit status: argv[1] when it is present and a decimal number (so tests can
 * check arbitrary statuses, truncated to 8 bits by the kernel), else 0.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void print_escaped(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == '"')
            printf("\\%c", *p);
        else if (isprint(*p))
            putchar(*p);
        else
            printf("\\x%02x", *p);
    }
}

int main(int argc, char **argv)
{
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d] (len %zu) = \"", i, strlen(argv[i]));
        print_escaped(argv[i]);
        printf("\"\n");
    }
    printf("argv[argc] is NULL: %s\n", argv[argc] == NULL ? "yes" : "no");

    static const char *vars[] = {"VMX_TEST_VAR", "VMX_EMPTY", "VMX_SPACES", "VMX_UNSET_NEVER"};
    for (unsigned i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        printf("getenv(%s) = ", vars[i]);
        if (v) {
            putchar('"');
            print_escaped(v);
            printf("\"\n");
        } else {
            printf("(unset)\n");
        }
    }
    int nvmx = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "VMX_", 4) == 0)
            nvmx++;
    printf("environ entries starting with VMX_: %d\n", nvmx);

    /* all of stdin */
    static unsigned char buf[65536];
    uint64_t total = 0, lines = 0, fnv = 0xcbf29ce484222325ull;
    int reads = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            perror("read");
            return 2;
        }
        if (n == 0)
            break;
        reads++;
        for (ssize_t i = 0; i < n; i++) {
            fnv = (fnv ^ buf[i]) * 0x100000001b3ull;
            lines += buf[i] == '\n';
        }
        total += (uint64_t)n;
    }
    printf("stdin: %" PRIu64 " bytes, %" PRIu64 " newlines, fnv1a=%016" PRIx64 "\n", total, lines, fnv);

    int status = 0;
    if (argc > 1) {
        char *end;
        long v = strtol(argv[1], &end, 10);
        if (*argv[1] && *end == '\0')
            status = (int)v;
    }
    printf("exiting with %d\n", status);
    fflush(stdout);
    exit(status);
}
