/*
 * The compiled page_tables.c timed on the bench's workloads (lguest_book/bench.py).
 *
 * This is the referee's driver (driver.c, which includes page_tables.c and the shims) with a
 * different main(): it first reads a set-up script in the driver's own protocol from the file
 * named by argv[1] (the model's Guest booted, a process made current, its user pages mapped:
 * recorded from the model, as the referee records it), then times, in CPU time of this process,
 * the same calls the bench makes on the model:
 *
 *   demand_page  rounds of: guest_pagetable_flush_user (untimed), then demand_page() on every
 *                page, a write fault on every other page;
 *   set_pte      guest_set_pte() of each page's PTE with Accessed set (argv[5]: a file of PTEs);
 *   touch        the driver's hardware walk (hw_walk) of every page, read, user mode (the
 *                driver's walk, not lguest's code; it saves the signal mask on every walk for
 *                its oops handling, a system call, so it is slower than a bare walk).
 *
 * Usage: c_bench SCRIPT BASE PAGES ROUNDS PTES.  Prints "demand_page NS fixed" and the others,
 * nanoseconds per operation (best round), on stderr (stdout carries the driver's replies).
 */
#define main referee_main
#include "driver.c"
#undef main
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 6 || !freopen(argv[1], "r", stdin) || !freopen("/dev/null", "w", stdout))
		return 2;
	referee_main(); /* the set-up script, to its end */
	struct lg_cpu *cpu = &the_lg.cpus[0];
	unsigned long base = strtoul(argv[2], NULL, 0), pages = strtoul(argv[3], NULL, 0);
	int rounds = atoi(argv[4]);
	static unsigned long long ptes[1 << 16];
	FILE *f = fopen(argv[5], "r");
	if (!f || pages > (1 << 16))
		return 2;
	for (unsigned long i = 0; i < pages; i++)
		if (fscanf(f, "%llu", &ptes[i]) != 1)
			return 2;
	fclose(f);
	unsigned long gpgdir = the_lg.pgdirs[cpu->cpu_pgd].gpgdir;
	double best = 1e30;
	unsigned long fixed = 0;
	for (int r = 0; r < rounds; r++) {
		guest_pagetable_flush_user(cpu);
		fixed = 0;
		double t0 = now();
		for (unsigned long i = 0; i < pages; i++) {
			unsigned long iomem = 0;
			fixed += demand_page(cpu, base + i * PAGE_SIZE, (i & 1) ? 2 : 0, &iomem);
		}
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	fprintf(stderr, "demand_page %.1f %lu\n", best / pages, fixed);
	best = 1e30;
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		for (unsigned long i = 0; i < pages; i++) {
			guest_set_pte(cpu, gpgdir, base + i * PAGE_SIZE, __pte(ptes[i]));
		}
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	fprintf(stderr, "set_pte %.1f\n", best / pages);
	best = 1e30;
	int ok = 0;
	for (int r = 0; r < rounds; r++) {
		ok = 0;
		double t0 = now();
		for (unsigned long i = 0; i < pages; i++) {
			int err;
			ok += hw_walk(cpu, base + i * PAGE_SIZE, 0, 1, &err) > 0;
		}
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	fprintf(stderr, "touch %.1f %d\n", best / pages, ok);
	fprintf(stderr, "dead %s\n", the_lg.dead ? the_lg.dead : "no");
	return 0;
}
