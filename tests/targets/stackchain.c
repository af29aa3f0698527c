/* A known call chain for stack tests: main -> top -> mid -> leaf, N times.
 *
 *   stackchain N     call top() N times; leaf() does one getppid() syscall
 * Built with -fno-omit-frame-pointer (user stacks follow frame pointers).
 * With -w first, it reads one byte from stdin before starting and, when done,
 * waits for stdin to close before exiting (so a tracer can still read its maps).
 * It prints "done N NS" when finished, NS the loop's duration in nanoseconds.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile long sink;

#ifdef CHAIN_LIB
long lib_leaf(long x);      /* in libchain.so, built by the test */
#endif

__attribute__((noinline)) long leaf(long x)
{
	sink += syscall(SYS_getppid);
#ifdef CHAIN_LIB
	sink += lib_leaf(x);
#endif
	return x + 1;
}

__attribute__((noinline)) long mid(long x)
{
	long r = leaf(x) * 3;
	sink += r;
	return r;
}

__attribute__((noinline)) long top(long x)
{
	long r = mid(x) + 7;
	sink += r;
	return r;
}

int main(int argc, char **argv)
{
	int a = 1, wait = 0;
	char c;
	if (argc > a && strcmp(argv[a], "-w") == 0) {
		a++;
		wait = 1;
		if (read(0, &c, 1) < 0)
			return 2;
	}
	long n = argc > a ? atol(argv[a]) : 1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		sink += top(i);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("done %ld %lld\n", n,
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	fflush(stdout);
	while (wait && read(0, &c, 1) > 0)
		;
	return 0;
}
