/* A target for aggregation tests that knows its own answers.
 *
 *   aggtarget values N      value_func(v) for v = 0..N-1 (a uprobe's %di: a known distribution)
 *   aggtarget sleeps A B    sleep_func(1) A times, then sleep_func(10) B times (milliseconds)
 *   aggtarget open N PATH   N openat() of PATH (fails if PATH is missing)
 * With -w first, it reads one byte from stdin before starting.
 * It prints "done" when finished.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile long sink;

__attribute__((noinline)) long value_func(long v)
{
	sink += v;
	return v;
}

__attribute__((noinline)) int sleep_func(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts))
		;
	return ms;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "-w")) {
		char go;
		if (read(0, &go, 1) != 1)
			return 3;
		argc--;
		argv++;
	}
	if (argc < 3)
		return 2;
	if (!strcmp(argv[1], "values")) {
		long n = atol(argv[2]);
		for (long v = 0; v < n; v++)
			value_func(v);
	} else if (!strcmp(argv[1], "sleeps") && argc > 3) {
		int a = atoi(argv[2]), b = atoi(argv[3]);
		for (int i = 0; i < a; i++)
			sleep_func(1);
		for (int i = 0; i < b; i++)
			sleep_func(10);
	} else if (!strcmp(argv[1], "open") && argc > 3) {
		long n = atol(argv[2]);
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
			if (fd >= 0)
				close(fd);
		}
	} else {
		return 2;
	}
	printf("done\n");
	return 0;
}
