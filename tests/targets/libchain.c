/* A shared library for stack tests: lib_leaf() is called from stackchain's leaf(). */
volatile long lib_sink;

__attribute__((noinline)) long lib_leaf(long x)
{
	lib_sink += x;
	return lib_sink;
}
