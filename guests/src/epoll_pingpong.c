/*
 * epoll_pingpong: two threads pass a counter back and forth through two pipes,
 * each waiting in epoll_wait(-1) for its pipe to become readable.
 *
 * Usage: epoll_pingpong [ROUNDS]   (default 10000)
 *
 * Prints the number of round trips and the final counter (2 * ROUNDS - 1);
 * exits 1 if a round went wrong. The benchmark of `cargo xtask bench-events`.
 *
 * guest-cflags: -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static int rounds;
static int to_b[2], to_a[2];

static int wait_read(int ep, int fd, long *v)
{
    struct epoll_event out;
    int n;
    do {
        n = epoll_wait(ep, &out, 1, -1);
    } while (n == 0);
    return n == 1 && read(fd, v, sizeof *v) == sizeof *v;
}

static void *side_b(void *arg)
{
    (void)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = to_b[0]};
    epoll_ctl(ep, EPOLL_CTL_ADD, to_b[0], &ev);
    for (int i = 0; i < rounds; i++) {
        long v;
        if (!wait_read(ep, to_b[0], &v)) exit(1);
        v++;
        write(to_a[1], &v, sizeof v);
    }
    close(ep);
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atoi(argv[1]) : 10000;
    pipe(to_b);
    pipe(to_a);
    pthread_t t;
    pthread_create(&t, NULL, side_b, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = to_a[0]};
    epoll_ctl(ep, EPOLL_CTL_ADD, to_a[0], &ev);
    long v = 0;
    for (int i = 0; i < rounds; i++) {
        write(to_b[1], &v, sizeof v);
        if (!wait_read(ep, to_a[0], &v) || v != 2 * i + 1) {
            printf("round %d went wrong: %ld\n", i, v);
            return 1;
        }
        v++;
    }
    pthread_join(t, NULL);
    printf("%d round trips, counter %ld\n", rounds, v - 1);
    return 0;
}
