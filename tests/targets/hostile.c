/* A traced program with a hostile name and hostile strings (tests/host/test_output_hostile.py).
 *
 *   hostile names N    rename itself (prctl PR_SET_NAME) to COMM, then N times
 *                      hostile_open(PATH) (an openat() that fails: ENOENT) and getppid()
 *   hostile hold N     N getppid() calls, print "held", then block until stdin closes
 * It prints "done N" when finished. COMM and PATH are repeated byte for byte in the test.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ESC [31m (an ANSI colour), a quote, an invalid UTF-8 byte, BEL */
static const char COMM[] = "\x1b[31mE\"\xff\x07z";
/* ESC [2J (clear screen), quote, backslash, invalid bytes, newline, tab */
static const char PATH[] = "/nonexistent/\x1b[2J\"q\\\xff\xfe\n\tend";

__attribute__((noinline)) int hostile_open(const char *path)
{
	return open(path, O_RDONLY | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	if (!strcmp(argv[1], "names")) {
		if (prctl(PR_SET_NAME, COMM, 0, 0, 0))
			return 3;
		for (long i = 0; i < n; i++) {
			int fd = hostile_open(PATH);
			if (fd >= 0)
				close(fd);
			syscall(SYS_getppid);
		}
	} else if (!strcmp(argv[1], "hold")) {
		char c;
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		printf("held\n");
		fflush(stdout);
		while (read(0, &c, 1) > 0)
			;
	} else {
		return 2;
	}
	printf("done %ld\n", n);
	return 0;
}
