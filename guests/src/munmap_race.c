/*
 * munmap_race: a thread reads a page in a loop while the main thread unmaps it. The
 * reader's next load faults: the process dies of SIGSEGV (status 139), and the host
 * running it must not crash. With the argument "store" the reader stores instead.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t *page;
static volatile int started;
static int store_mode;

static void *reader(void *arg)
{
    (void)arg;
    uint64_t sum = 0;
    for (unsigned long i = 0;; i++) {
        if (store_mode)
            page[i & 511] = i;
        else
            sum += page[i & 511];
        if (i == 1000)
            started = 1;
    }
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv)
{
    store_mode = argc > 1 && !strcmp(argv[1], "store");
    page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 1;
    printf("racing munmap against a %s\n", store_mode ? "writer" : "reader");
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, 0, reader, 0);
    while (!started)
        sched_yield();
    munmap((void *)page, 4096);
    pthread_join(t, 0);
    printf("the reader survived (must not be printed)\n");
    return 0;
}
