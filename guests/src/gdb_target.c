/* gdb_target: the program the gdb-stub tests debug (vmx run --gdb).
 *
 * Built with debug information and without optimisation so that gdb can stop at `main`,
 * print locals, and watch a global at a known line. Two worker threads let `info threads`
 * list three threads; main's exit status is 3.
 *
 * guest-cflags: -g -O0 -pthread
 */
#include <pthread.h>
#include <stdio.h>

static const char greeting[] = "hello from the gdb target";
volatile int watched = 0;
volatile int workers_ready = 0;
volatile long sums[2];

static void *worker(void *arg) {
    long id = (long)arg;
    long sum = 0;
    for (long i = 0; i < 1000; i++)
        sum += i * (id + 1);
    sums[id] = sum; /* worker line */
    __atomic_add_fetch(&workers_ready, 1, __ATOMIC_SEQ_CST);
    return arg;
}

int main(int argc, char **argv) {
    int local = 40 + argc + 1;
    (void)argv;
    printf("%s: local=%d\n", greeting, local);
    watched = local * 2; /* watch line */
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("sums %ld %ld watched %d\n", sums[0], sums[1], watched);
    return 3;
}
