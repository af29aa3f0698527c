#include <stddef.h>
#include <stdint.h>

__attribute__((noinline)) long kp_target(long n, const char *s, int64_t x, const uint8_t *arr)
{
	__asm__ volatile("" ::: "memory");
	return n + (s != NULL) + arr[0] + (long)x;
}

int main(void)
{
	static const uint8_t arr[4] = {1, 2, 250, 255};
	static const char *strs[] = {"hello", "w\xc3\xb6rld", "bad\xff\xfe!", "abc"};
	long r = 0;
	for (int i = 0; i < 4; i++)
		r += kp_target(-5 - i, strs[i], (int64_t)0x1122334455667788LL + i, arr);
	r += kp_target(7, NULL, -1, arr);	/* the string fetches fault */
	return (int)(r & 1);
}
