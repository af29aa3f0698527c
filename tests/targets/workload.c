/* A workload that counts itself: every probe-able action is done exactly N times.
 *
 *   workload calls N         call target_func(i, -i, "arg-<i>") N times (uprobe target)
 *   workload getppid N       N getppid() syscalls (tracepoint syscalls:sys_enter_getppid)
 *   workload open N PATH [USEC]  N openat() of PATH (fails if PATH is missing), with a
 *                            pause of USEC microseconds after each (a load that does
 *                            not flood a tracer, nor take a whole CPU)
 *   workload create PATH     one openat(PATH, O_WRONLY|O_CREAT|O_EXCL, 0640) that creates it
 *   workload pingpong        two processes bounce a byte through pipes until killed
 *                            (context switches on every CPU; kill its process group)
 *   workload wait            block until stdin closes, then exit (a target for -p)
 * With -w first, it reads one byte from stdin before starting (so a tracer can
 * arm its probes on the already known pid).
 * It prints "done N" when finished.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile long sink;

__attribute__((noinline)) long target_func(long a, int b, const char *s)
{
	sink += a + b + (long)strlen(s);
	return a * 2;
}

__attribute__((noinline)) static int static_helper(int x)
{
	sink += x;
	return x + 1;
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
	if (argc < 2)
		return 2;
	long n = argc > 2 ? atol(argv[2]) : 1;
	char buf[64];
	if (!strcmp(argv[1], "calls")) {
		for (long i = 0; i < n; i++) {
			snprintf(buf, sizeof(buf), "arg-%ld", i);
			target_func(i, (int)-i, buf);
			static_helper((int)i);
		}
	} else if (!strcmp(argv[1], "getppid")) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else if (!strcmp(argv[1], "open")) {
		const char *path = argc > 3 ? argv[3] : "/nonexistent/kprobes-test";
		long pause = argc > 4 ? atol(argv[4]) : 0;
		for (long i = 0; i < n; i++) {
			int fd = open(path, O_RDONLY | O_CLOEXEC, 0);
			if (fd >= 0)
				close(fd);
			if (pause > 0)
				usleep(pause);
		}
	} else if (!strcmp(argv[1], "create") && argc > 2) {
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (fd < 0) {
			perror(argv[2]);
			return 1;
		}
		close(fd);
		n = 1;
	} else if (!strcmp(argv[1], "pingpong")) {
		int p1[2], p2[2];
		char c = 'x';
		if (pipe(p1) || pipe(p2))
			return 1;
		if (fork() == 0) {
			while (read(p1[0], &c, 1) == 1 && write(p2[1], &c, 1) == 1)
				;
			return 0;
		}
		while (write(p1[1], &c, 1) == 1 && read(p2[0], &c, 1) == 1)
			;
		return 0;
	} else if (!strcmp(argv[1], "wait")) {
		char c;
		while (read(0, &c, 1) > 0)
			;
	} else {
		return 2;
	}
	printf("done %ld\n", n);
	return 0;
}
