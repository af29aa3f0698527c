/* rawcopy PAGE_SIZE TYPE_ID PID PIPE...: the raw-copy ceiling for bench/throughput.py.
 *
 * The least a consumer can do: poll every CPU's trace_pipe_raw (opened
 * O_NONBLOCK, as kprobes' reader does), read whole pages into one buffer and
 * walk each page's records only to count those of event TYPE_ID from PID (0 =
 * any). On SIGTERM it reads what is left (the caller turned tracing off first)
 * and prints "pages=P records=R matched=M". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long pages, records, matched;

static void walk(const unsigned char *page, long size, unsigned type_id, int pid)
{
	uint64_t commit;
	memcpy(&commit, page + 8, 8);
	long len = (long)(commit & ~(3ULL << 30)), i = 0, n = len / 4;
	if (16 + len > size)
		return;
	const unsigned char *data = page + 16;
	while (i < n) {
		uint32_t w;
		memcpy(&w, data + 4 * i, 4);
		uint32_t tl = w & 31;
		long start, next;
		if (tl >= 1 && tl <= 28) {
			start = 4 * i + 4;
			next = i + tl + 1;
		} else if (tl == 0) {
			uint32_t ln;
			memcpy(&ln, data + 4 * i + 4, 4);
			start = 4 * i + 8;
			next = i + 1 + ln / 4;
		} else if (tl == 29) {          /* padding */
			if (!(w >> 5))
				break;
			uint32_t ln;
			memcpy(&ln, data + 4 * i + 4, 4);
			i += 1 + ln / 4;
			continue;
		} else {                        /* time extend / time stamp */
			i += 2;
			continue;
		}
		records++;
		uint16_t type;
		int32_t rpid;
		memcpy(&type, data + start, 2);
		memcpy(&rpid, data + start + 4, 4);
		if (type == type_id && (!pid || rpid == pid))
			matched++;
		i = next;
	}
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	long size = atol(argv[1]);
	unsigned type_id = (unsigned)atoi(argv[2]);
	int pid = atoi(argv[3]);
	int n = argc - 4;
	struct pollfd *fds = calloc(n, sizeof(*fds));
	unsigned char *buf = malloc(size * 64);
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	for (int c = 0; c < n; c++) {
		fds[c].fd = open(argv[4 + c], O_RDONLY | O_NONBLOCK);
		fds[c].events = POLLIN;
		if (fds[c].fd < 0) {
			perror(argv[4 + c]);
			return 1;
		}
	}
	for (;;) {
		int got = 0;
		for (int c = 0; c < n; c++) {
			for (int k = 0; k < 64; k++) {
				ssize_t r = read(fds[c].fd, buf, size);
				if (r <= 0)
					break;
				got = 1;
				pages++;
				walk(buf, r, type_id, pid);
			}
		}
		if (got)
			continue;
		if (stop)
			break;
		poll(fds, n, 200);
	}
	printf("pages=%ld records=%ld matched=%ld\n", pages, records, matched);
	return 0;
}
