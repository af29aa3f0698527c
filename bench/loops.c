/* Load generators for bench/throughput.py (built with gcc into a temp dir).
 *
 *   loops sys N     N x syscall(SYS_getppid)  (tracepoint syscalls:sys_enter_getppid,
 *                                             kprobe __x64_sys_getppid)
 *   loops call N    N x bench_target(i)       (uprobe on bench_target)
 *   loops open N P  N x open(P) of a path P that does not exist (opensnoop's cost)
 *   loops sys N R   the same, paced to at most R calls per second (busy-waiting)
 *
 * Prints one line: "start_ns=<CLOCK_MONOTONIC at main()> loop_ns=<loop wall time>
 * n=<N> utime_us=<user CPU> stime_us=<system CPU>" so the harness can compute
 * ns per traced call, start-up (command start -> workload running) and subtract
 * the workload's own CPU from its parent's.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile long sink;

__attribute__((noinline)) long bench_target(long i)
{
	sink += i;
	return i;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long start = now_ns();
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	double rate = argc > 3 ? atof(argv[3]) : 0;
	long long t0 = now_ns();
	int sys = !strcmp(argv[1], "sys");
	if (!strcmp(argv[1], "open") && argc > 3) {
		for (long i = 0; i < n; i++) {
			int fd = open(argv[3], O_RDONLY);
			if (fd >= 0)
				close(fd);
		}
		rate = 0;
		sys = -1;
	} else if (!sys && strcmp(argv[1], "call")) {
		return 2;
	}
	if (sys < 0) {
		/* done above */
	} else if (rate > 0) {
		for (long i = 0; i < n; i++) {
			if (!(i & 255))
				while (now_ns() - t0 < (long long)(i / rate * 1e9))
					;
			if (sys)
				syscall(SYS_getppid);
			else
				bench_target(i);
		}
	} else if (sys) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (!strcmp(argv[1], "call")) {
		for (long i = 0; i < n; i++)
			bench_target(i);
	} else {
		return 2;
	}
	long long t1 = now_ns();
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "start_ns=%lld loop_ns=%lld n=%ld utime_us=%ld stime_us=%ld\n", start,
		t1 - t0, n, (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
		(long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec));
	return 0;
}
