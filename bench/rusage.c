/* rusage OUT CMD ARGS...: run CMD as a child of this small process (so its peak
 * RSS is its own, not inherited from a big parent at fork), wait4 for it and
 * write "utime_us stime_us maxrss_kb exitcode" to OUT. For bench/throughput.py. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0)
		return 3;
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 4;
	fprintf(f, "%ld %ld %ld %d\n", (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
		(long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec), ru.ru_maxrss,
		WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	fclose(f);
	return 0;
}
