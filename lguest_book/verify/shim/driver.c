/*
 * lguest-book referee 1: the original page_tables.c, driven through a pipe.
 *
 * Build (done by lguest_book/verify/c_referee.py):
 *   gcc -m32 -O1 -w -I<build>/include -I<this dir> [-DCONFIG_X86_PAE] -o <build>/referee driver.c
 * where <build>/include holds empty stand-ins for the kernel headers page_tables.c includes,
 * lg.h pulls in lguest_shim.h, and <build>/page_tables.c is the extracted C.
 *
 * One command per line on stdin, one answer per line on stdout ("ok ..." or "err ...").
 * The kernel functions it supplies (the allocator, get_user_pages_fast, lgread/lgwrite,
 * kill_guest with the kernel's printf, pin_stack_pages) are written from Linux 4.7's own
 * definitions; see ASSUMPTIONS.md.  What the rest of lguest does around page_tables.c (the
 * hypercall dispatch, the page-fault trap, guest_pa, entering the Guest, launch and teardown)
 * is mirrored from lguest_book/hypercalls.py, so that the model and the C are driven through
 * the same doors.
 */
#include "lguest_shim.h"
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#include "page_tables.c"

static int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
static int kvsnprintf_wrap(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, 512, fmt, ap);
	va_end(ap);
	return n;
}

/* ---- the host ---------------------------------------------------------------------------- */
struct page mem_map[HOST_FRAMES];
unsigned char *host_mem;
static unsigned char frame_used[HOST_FRAMES];
static int fail_after = -1, fail_count;
static int anomalies;
unsigned int current_host_cpu, nr_host_cpus = 1;
unsigned long switcher_addr;
static struct page *switcher_pages[1 + 2 * 8];
struct page **lg_switcher_pages = switcher_pages;
static u32 rand_queue[1 << 16];
static unsigned int rand_head, rand_tail;

static unsigned long alloc_frame(void)
{
	unsigned long f;
	for (f = 1; f < HOST_FRAMES; f++)
		if (!frame_used[f]) {
			frame_used[f] = 1;
			mem_map[f].count = 1;
			memset(host_mem + f * PAGE_SIZE, 0, PAGE_SIZE);
			return f;
		}
	return 0;
}

unsigned long get_zeroed_page(int gfp)
{
	if (fail_after >= 0) {
		if (fail_after > 0) {
			fail_after--;
		} else if (fail_count > 0) {
			if (--fail_count == 0)
				fail_after = -1;
			return 0;
		}
	}
	unsigned long f = alloc_frame();
	return f ? (unsigned long)__va(f << PAGE_SHIFT) : 0;
}

void get_page(struct page *page) { page->count++; }

void put_page(struct page *page)
{
	unsigned long f = page_to_pfn(page);
	if (f >= HOST_FRAMES || page->count <= 0) {
		anomalies++;
		return;
	}
	if (--page->count == 0)
		frame_used[f] = 0;
}

void free_page(unsigned long addr)
{
	if (addr)
		put_page(pfn_to_page(__pa(addr) >> PAGE_SHIFT));
}

u32 prandom_u32(void)
{
	if (rand_head == rand_tail) {
		printf("err prandom_u32: the supplied values are used up\n");
		fflush(stdout);
		exit(3);
	}
	return rand_queue[rand_head++];
}

/* ---- oopses ------------------------------------------------------------------------------ */
static sigjmp_buf oops_jmp;
static char oops_msg[200];

void shim_bug(const char *where)
{
	snprintf(oops_msg, sizeof(oops_msg), "kernel BUG in %s", where);
	siglongjmp(oops_jmp, 1);
}

static void on_segv(int sig)
{
	snprintf(oops_msg, sizeof(oops_msg), "BUG: unable to handle kernel paging request");
	siglongjmp(oops_jmp, 1);
}

/* ---- the Launcher's guest memory, lgread/lgwrite, get/put_user ------------------------ */
static struct lguest the_lg;
static long launcher_frames[1 << 20]; /* guest page -> host frame; 0 untouched */
static unsigned long mem_pages;

static unsigned long mem_base(void) { return (unsigned long)the_lg.mem_base; }

static long launcher_page(unsigned long uaddr, int allocate)
{
	unsigned long off = uaddr - mem_base();
	if (uaddr < mem_base() || off >= mem_pages * PAGE_SIZE)
		return -1;
	unsigned long idx = off >> PAGE_SHIFT;
	if (!launcher_frames[idx] && allocate) {
		unsigned long f = alloc_frame(); /* demand-zero memory: not subject to injection */
		if (!f)
			return -1;
		launcher_frames[idx] = f;
	}
	return launcher_frames[idx];
}

static int copy_from_launcher(void *dst, unsigned long uaddr, unsigned len)
{
	while (len) {
		long f = launcher_page(uaddr, 0);
		unsigned off = uaddr & (PAGE_SIZE - 1), chunk = PAGE_SIZE - off < len ? PAGE_SIZE - off : len;
		if (f < 0)
			return 1;
		if (f)
			memcpy(dst, host_mem + f * PAGE_SIZE + off, chunk);
		else
			memset(dst, 0, chunk);
		dst = (char *)dst + chunk;
		uaddr += chunk;
		len -= chunk;
	}
	return 0;
}

static int copy_to_launcher(unsigned long uaddr, const void *src, unsigned len)
{
	unsigned long a = uaddr;
	unsigned n = len;
	while (n) { /* check first: a failed copy writes nothing */
		if (launcher_page(a, 0) < 0)
			return 1;
		unsigned chunk = PAGE_SIZE - (a & (PAGE_SIZE - 1));
		if (chunk > n)
			chunk = n;
		a += chunk;
		n -= chunk;
	}
	while (len) {
		long f = launcher_page(uaddr, 1);
		unsigned off = uaddr & (PAGE_SIZE - 1), chunk = PAGE_SIZE - off < len ? PAGE_SIZE - off : len;
		if (f <= 0)
			return 1;
		memcpy(host_mem + f * PAGE_SIZE + off, src, chunk);
		src = (const char *)src + chunk;
		uaddr += chunk;
		len -= chunk;
	}
	return 0;
}

/* mm/gup.c get_user_pages_fast(): pin nr_pages pages of the current process from start,
 * faulting them in as needed (the Launcher's guest memory is an ordinary writable anonymous
 * mapping: a first touch gets a zeroed page); returns how many were pinned, or -EFAULT when
 * the first is not mapped at all.  Each pinned page carries one more reference. */
int get_user_pages_fast(unsigned long start, int nr_pages, int write, struct page **pages)
{
	int i;
	for (i = 0; i < nr_pages; i++) {
		long f = launcher_page(start + i * PAGE_SIZE, 1);
		if (f <= 0)
			break;
		get_page(&mem_map[f]);
		pages[i] = &mem_map[f];
	}
	return i ? i : -EFAULT;
}

/* core.c lguest_address_ok(): the access ends within guest memory and does not wrap, all in
 * unsigned long (32-bit) arithmetic. */
bool lguest_address_ok(const struct lguest *lg, unsigned long addr, unsigned long len)
{
	return addr + len <= lg->pfn_limit * PAGE_SIZE && (addr + len >= addr);
}

/* core.c __lgread(): a refused or faulting copy reads as zeroes and kills the Guest. */
void __lgread(struct lg_cpu *cpu, void *b, unsigned long addr, unsigned bytes)
{
	if (!lguest_address_ok(cpu->lg, addr, bytes)
	    || copy_from_launcher(b, (unsigned long)cpu->lg->mem_base + addr, bytes) != 0) {
		memset(b, 0, bytes);
		kill_guest(cpu, "bad read address %#lx len %u", addr, bytes);
	}
}

/* core.c __lgwrite() */
void __lgwrite(struct lg_cpu *cpu, unsigned long addr, const void *b, unsigned bytes)
{
	if (!lguest_address_ok(cpu->lg, addr, bytes)
	    || copy_to_launcher((unsigned long)cpu->lg->mem_base + addr, b, bytes) != 0)
		kill_guest(cpu, "bad write address %#lx len %u", addr, bytes);
}

int shim_get_user(u32 *x, unsigned long uaddr) { return copy_from_launcher(x, uaddr, 4) ? -EFAULT : 0; }
int shim_put_user(u32 x, unsigned long uaddr) { return copy_to_launcher(uaddr, &x, 4) ? -EFAULT : 0; }

/* ---- the kernel's printf (lib/vsprintf.c, Linux 4.7), for kill_guest ---------------------------
 * Written for this project from the rules of vsprintf.c's format_decode(), number(), string()
 * and pointer(); glibc's printf is never used for a kill message, because it differs exactly
 * where lguest's messages go (glibc prints %#lx of 0 as "0"; the kernel as "0x0").
 * On this 32-bit machine int and long are 32 bits, long long 64, pointers 32. */
enum { K_LEFT = 1, K_PLUS = 2, K_SPACE = 4, K_SPECIAL = 8, K_ZEROPAD = 16, K_SIGN = 32, K_SMALL = 64 };

struct kbuf { char *p; size_t room; };
static void kput(struct kbuf *b, char c) { if (b->room > 1) { *b->p++ = c; b->room--; } }

/* number(): sign, then the prefix ("0x" for base 16 whenever '#' is given, even for zero;
 * "0" for base 8 unless the value is zero), then zero or space padding to the width (the
 * prefix and sign count in it), then precision zeroes, then the digits. */
static void knumber(struct kbuf *b, unsigned long long num, int base, int flags, int width, int precision)
{
	char tmp[24], sign = 0;
	int i = 0, need_pfx = (flags & K_SPECIAL) && base != 10, is_zero = num == 0;
	const char *digits = (flags & K_SMALL) ? "0123456789abcdef" : "0123456789ABCDEF";
	if (flags & K_LEFT)
		flags &= ~K_ZEROPAD;
	if (flags & K_SIGN) {
		if ((signed long long)num < 0) {
			sign = '-';
			num = -(signed long long)num;
			width--;
		} else if (flags & K_PLUS) {
			sign = '+';
			width--;
		} else if (flags & K_SPACE) {
			sign = ' ';
			width--;
		}
	}
	if (need_pfx)
		width -= base == 16 ? 2 : !is_zero;
	do {
		tmp[i++] = digits[num % base];
		num /= base;
	} while (num);
	if (i > precision)
		precision = i;
	width -= precision;
	if (!(flags & (K_ZEROPAD | K_LEFT)))
		while (--width >= 0)
			kput(b, ' ');
	if (sign)
		kput(b, sign);
	if (need_pfx) {
		if (base == 16 || !is_zero)
			kput(b, '0');
		if (base == 16)
			kput(b, (flags & K_SMALL) ? 'x' : 'X');
	}
	if (!(flags & K_LEFT))
		while (--width >= 0)
			kput(b, (flags & K_ZEROPAD) ? '0' : ' ');
	while (i <= --precision)
		kput(b, '0');
	while (--i >= 0)
		kput(b, tmp[i]);
	while (--width >= 0)
		kput(b, ' ');
}

/* string(): at most precision characters, padded with spaces to the width. */
static void kstring(struct kbuf *b, const char *s, int flags, int width, int precision)
{
	int len = 0;
	while (s[len] && (precision < 0 || len < precision))
		len++;
	if (!(flags & K_LEFT))
		while (len < width--)
			kput(b, ' ');
	for (int i = 0; i < len; i++)
		kput(b, s[i]);
	while (len < width--)
		kput(b, ' ');
}

static int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct kbuf b = { buf, size };
	for (; *fmt; fmt++) {
		int flags = 0, width = -1, precision = -1, qualifier = 0, base = 10;
		unsigned long long num;
		if (*fmt != '%') {
			kput(&b, *fmt);
			continue;
		}
		for (;;) { /* flags */
			char c = *++fmt;
			if (c == '-') flags |= K_LEFT;
			else if (c == '+') flags |= K_PLUS;
			else if (c == ' ') flags |= K_SPACE;
			else if (c == '#') flags |= K_SPECIAL;
			else if (c == '0') flags |= K_ZEROPAD;
			else break;
		}
		if (*fmt >= '0' && *fmt <= '9') {
			width = 0;
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + *fmt++ - '0';
		} else if (*fmt == '*') {
			width = va_arg(ap, int);
			if (width < 0) {
				width = -width;
				flags |= K_LEFT;
			}
			fmt++;
		}
		if (*fmt == '.') {
			fmt++;
			precision = 0;
			if (*fmt == '*') {
				precision = va_arg(ap, int);
				fmt++;
			} else
				while (*fmt >= '0' && *fmt <= '9')
					precision = precision * 10 + *fmt++ - '0';
			if (precision < 0)
				precision = 0;
		}
		if (*fmt == 'h' || *fmt == 'l' || *fmt == 'z') {
			qualifier = *fmt++;
			if (qualifier == 'l' && *fmt == 'l') { qualifier = 'L'; fmt++; }
			else if (qualifier == 'h' && *fmt == 'h') { qualifier = 'H'; fmt++; }
		}
		switch (*fmt) {
		case '%':
			kput(&b, '%');
			continue;
		case 'c':
			kstring(&b, (char[2]){ (char)va_arg(ap, int), 0 }, flags, width, -1);
			continue;
		case 's':
			kstring(&b, va_arg(ap, const char *), flags, width, precision);
			continue;
		case 'p': { /* pointer(): a plain %p (no extension letter follows in lguest's messages) */
			void *ptr = va_arg(ap, void *);
			if (!ptr) {
				kstring(&b, "(null)", flags, width < 0 ? (int)(2 * sizeof(void *)) : width, -1);
				continue;
			}
			flags |= K_SMALL;
			if (width < 0) {
				width = 2 * sizeof(void *);
				flags |= K_ZEROPAD;
			}
			knumber(&b, (unsigned long)ptr, 16, flags, width, precision);
			continue;
		}
		case 'o': base = 8; break;
		case 'x': flags |= K_SMALL; /* fall through */
		case 'X': base = 16; break;
		case 'd': case 'i': flags |= K_SIGN; break;
		case 'u': break;
		default: /* not a conversion the kernel knows: it prints the '%' and the rest as text */
			kput(&b, '%');
			if (!*fmt)
				goto done;
			kput(&b, *fmt);
			continue;
		}
		if (qualifier == 'L')
			num = va_arg(ap, unsigned long long);
		else if (qualifier == 'l' || qualifier == 'z')
			num = (flags & K_SIGN) ? (unsigned long long)(long long)va_arg(ap, long) : va_arg(ap, unsigned long);
		else if (qualifier == 'H')
			num = (flags & K_SIGN) ? (unsigned long long)(long long)(signed char)va_arg(ap, int) : (unsigned char)va_arg(ap, int);
		else if (qualifier == 'h')
			num = (flags & K_SIGN) ? (unsigned long long)(long long)(short)va_arg(ap, int) : (unsigned short)va_arg(ap, int);
		else
			num = (flags & K_SIGN) ? (unsigned long long)(long long)va_arg(ap, int) : va_arg(ap, unsigned int);
		knumber(&b, num, base, flags, width, precision);
	}
done:
	if (size)
		*b.p = 0;
	return (int)(b.p - buf);
}

/* lg.h kill_guest(): only the first reason is kept; it is kasprintf(GFP_ATOMIC, fmt, ...). */
void kill_guest(struct lg_cpu *cpu, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	if (cpu->lg->dead)
		return;
	va_start(ap, fmt);
	kvsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cpu->lg->dead = strdup(buf);
}

/* interrupts_and_traps.c pin_stack_pages(): pin esp1 - 1 - i * PAGE_SIZE for each stack page.
 * SIMPLIFICATION: stack_pages comes from the Guest (more than 2 kills it but is kept), so the
 * C may loop up to 2**32 times; past 2**20 pages the addresses repeat (32-bit wrap) and pinning
 * a page a second time changes nothing, so the loop stops there. */
void pin_stack_pages(struct lg_cpu *cpu)
{
	unsigned int i;
	for (i = 0; i < cpu->lg->stack_pages && i < (1u << 20); i++)
		pin_page(cpu, cpu->esp1 - 1 - i * PAGE_SIZE);
}

/* "kfmt FORMAT ARG...": the kernel's printf of one format, for the tests of kvsnprintf. */
static void kfmt_command(const char *line)
{
	char fmt[256], out[512];
	unsigned long long a[4] = {0};
	int n = sscanf(line, "%*s %255s %llu %llu %llu %llu", fmt, &a[0], &a[1], &a[2], &a[3]);
	for (char *p = fmt; *p; p++)
		if (*p == '_')
			*p = ' '; /* the format travels with spaces as '_' */
	(void)n;
	/* Every argument goes as the C type its conversion names. */
	unsigned long long *arg = a;
	char *q = fmt, tmp[512], *o = out;
	out[0] = 0;
	while (*q) {
		char *pct = strchr(q, '%');
		if (!pct) { strcpy(o, q); break; }
		memcpy(o, q, pct - q); o += pct - q; *o = 0;
		char *end = pct + 1;
		while (*end && strchr("-+ #0123456789.hlz", *end)) end++;
		char conv = *end, spec[64];
		snprintf(spec, sizeof(spec), "%.*s", (int)(end - pct + 1), pct);
		if (conv == '%') kvsnprintf_wrap(tmp, spec);
		else if (conv == 'p') kvsnprintf_wrap(tmp, spec, (void *)(unsigned long)*arg++);
		else if (strstr(spec, "ll")) kvsnprintf_wrap(tmp, spec, *arg++);
		else if (strchr(spec, 'l')) kvsnprintf_wrap(tmp, spec, (unsigned long)*arg++);
		else kvsnprintf_wrap(tmp, spec, (unsigned int)*arg++);
		strcpy(o, tmp); o += strlen(tmp);
		q = conv ? end + 1 : end;
	}
	printf("ok %s\n", out);
}

/* ---- the doors: mirrored from lguest_book/hypercalls.py ---------------------------------- */
#define GUEST_PL 1
enum { LHCALL_FLUSH_ASYNC = 0, LHCALL_LGUEST_INIT = 1, LHCALL_NEW_PGTABLE = 4, LHCALL_FLUSH_TLB = 5,
       LHCALL_SET_STACK = 7, LHCALL_SET_PMD = 13, LHCALL_SET_PTE = 14, LHCALL_SET_PGD = 15,
       LHCALL_SEND_INTERRUPTS = 19 };

static void oops_kill(struct lg_cpu *cpu)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "Launcher killed by a host oops: %s", oops_msg);
	kill_guest(cpu, "%s", buf);
}

static void guest_set_stack(struct lg_cpu *cpu, u32 seg, u32 esp, unsigned int pages)
{
	if ((seg & 0x3) != GUEST_PL)
		kill_guest(cpu, "bad stack segment %i", seg);
	if (pages > 2)
		kill_guest(cpu, "bad stack pages %u", pages);
	cpu->ss1 = seg;
	cpu->esp1 = esp;
	cpu->lg->stack_pages = pages;
	pin_stack_pages(cpu);
}

static void initialize(struct lg_cpu *cpu, u32 call, u32 arg1)
{
	struct lguest *lg = cpu->lg;
	if (call != LHCALL_LGUEST_INIT) {
		kill_guest(cpu, "hypercall %li before INIT", (long)call);
		return;
	}
	if (!lguest_address_ok(lg, arg1, LGUEST_DATA_SIZE))
		kill_guest(cpu, "bad guest page %p", lg->lguest_data);
	else
		lg->lguest_data = (struct lguest_data *)(mem_base() + arg1);
	page_table_guest_data_init(cpu);
	guest_pagetable_clear_all(cpu);
}

static void do_hcall(struct lg_cpu *cpu, u32 call, u32 a1, u32 a2, u32 a3, u32 a4)
{
	struct lguest *lg = cpu->lg;
	if (lg->dead)
		return;
	if (sigsetjmp(oops_jmp, 1)) {
		oops_kill(cpu);
		return;
	}
	if (!lg->lguest_data)
		initialize(cpu, call, a1);
	else if (call == LHCALL_LGUEST_INIT)
		kill_guest(cpu, "already have lguest_data");
	else if (call == LHCALL_FLUSH_TLB) {
		if (a1)
			guest_pagetable_clear_all(cpu);
		else
			guest_pagetable_flush_user(cpu);
	} else if (call == LHCALL_NEW_PGTABLE)
		guest_new_pagetable(cpu, a1);
	else if (call == LHCALL_SET_STACK)
		guest_set_stack(cpu, a1, a2, a3);
	else if (call == LHCALL_SET_PTE) {
#ifdef CONFIG_X86_PAE
		guest_set_pte(cpu, a1, a2, __pte(a3 | (u64)a4 << 32));
#else
		guest_set_pte(cpu, a1, a2, __pte(a3));
#endif
	} else if (call == LHCALL_SET_PGD)
		guest_set_pgd(lg, a1, a2);
#ifdef CONFIG_X86_PAE
	else if (call == LHCALL_SET_PMD)
		guest_set_pmd(lg, a1, a2);
#endif
	else if (call == LHCALL_FLUSH_ASYNC || call == LHCALL_SEND_INTERRUPTS)
		;
	else
		kill_guest(cpu, "Bad hypercall %li\n", (long)call);
}

static const char *page_fault(struct lg_cpu *cpu, u32 cr2, int errcode, unsigned long *info)
{
	static unsigned long iomem;
	static bool fixed;
	*info = 0;
	if (sigsetjmp(oops_jmp, 1)) {
		oops_kill(cpu);
		return "killed";
	}
	fixed = demand_page(cpu, cr2, errcode, &iomem);
	if (cpu->lg->dead)
		return "killed";
	if (fixed)
		return "fixed";
	if (iomem) {
		*info = iomem;
		return "mmio";
	}
	if (cpu->lg->lguest_data && put_user(cr2, &cpu->lg->lguest_data->cr2)) {
		kill_guest(cpu, "Writing cr2");
		return "killed";
	}
	*info = cr2;
	return "guest";
}

static int enter_guest(struct lg_cpu *cpu)
{
	if (cpu->lg->dead)
		return 0;
	if (sigsetjmp(oops_jmp, 1)) {
		oops_kill(cpu);
		return 0;
	}
	map_switcher_in_guest(cpu, NULL);
	return 1;
}


/* ---- the CPU's walk of the shadow tables: mirrored from lguest_book/mmu.py --------------------
 * The model's touch() walks the shadow tables as the hardware would, setting Accessed (and
 * Dirty on a write) in them; the C side must see the same bits, so the driver walks too. */
#define PAE_PFN_MASK 0x00000FFFFFFFF000ULL
static void *walk_frame(unsigned long long frame)
{
	if (frame == 0 || frame >= HOST_FRAMES) {
		snprintf(oops_msg, sizeof(oops_msg), "BUG: unable to handle kernel paging request");
		siglongjmp(oops_jmp, 1);
	}
	return host_mem + frame * PAGE_SIZE;
}

static int large_page(pteval_t *slot, int write, int user, int *err)
{
	pteval_t e = *slot;
	if ((user && !(e & _PAGE_USER)) || (write && !(e & _PAGE_RW))) {
		*err = (write ? 2 : 0) | (user ? 4 : 0) | 1;
		return 0;
	}
	*slot = e | _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
	return 1;
}

/* 1: translated; 0: page fault with *err; -1: the walk oopsed */
static int hw_walk(struct lg_cpu *cpu, u32 vaddr, int write, int user, int *err)
{
	int base = (write ? 2 : 0) | (user ? 4 : 0);
	*err = 0;
	if (sigsetjmp(oops_jmp, 1)) {
		oops_kill(cpu);
		return -1;
	}
	pteval_t *top = walk_frame(__pa(the_lg.pgdirs[cpu->cpu_pgd].pgdir) >> PAGE_SHIFT);
#ifdef CONFIG_X86_PAE
	pteval_t pdpte = top[vaddr >> 30];
	if (!(pdpte & _PAGE_PRESENT)) { *err = base; return 0; }
	pteval_t *pmds = walk_frame((pdpte & PAE_PFN_MASK) >> 12);
	unsigned idx = (vaddr >> 21) & 511;
	pteval_t pmd = pmds[idx];
	if (!(pmd & _PAGE_PRESENT)) { *err = base; return 0; }
	if (pmd & _PAGE_PSE) return large_page(&pmds[idx], write, user, err);
	pteval_t *ptes = walk_frame((pmd & PAE_PFN_MASK) >> 12);
#else
	unsigned idx = vaddr >> 22;
	pteval_t pmd = top[idx];
	pteval_t *pmds = top;
	if (!(pmd & _PAGE_PRESENT)) { *err = base; return 0; }
	if (pmd & _PAGE_PSE) return large_page(&top[idx], write, user, err);
	pteval_t *ptes = walk_frame((pmd & 0xFFFFF000u) >> 12);
#endif
	unsigned k = (vaddr >> 12) & (PTRS_PER_PTE - 1);
	pteval_t pte = ptes[k];
	if (!(pte & _PAGE_PRESENT)) { *err = base; return 0; }
	pteval_t rights = pmd & pte;
	if ((user && !(rights & _PAGE_USER)) || (write && !(rights & _PAGE_RW))) { *err = base | 1; return 0; }
	if (!(pmd & _PAGE_ACCESSED))
		pmds[idx] = pmd | _PAGE_ACCESSED;
	ptes[k] = pte | _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0);
	return 1;
}

static int launch(void)
{
	struct lg_cpu *cpu = &the_lg.cpus[0];
	cpu->regs_page = (void *)get_zeroed_page(GFP_KERNEL);
	if (!cpu->regs_page)
		return -ENOMEM;
	int err = init_guest_pagetable(&the_lg);
	if (err) {
		free_page((unsigned long)cpu->regs_page);
		cpu->regs_page = NULL;
	}
	return err;
}

static void teardown(void)
{
	struct lg_cpu *cpu = &the_lg.cpus[0];
	if (!sigsetjmp(oops_jmp, 1))
		free_guest_pagetable(&the_lg);
	else
		oops_kill(cpu);
	free_page((unsigned long)cpu->regs_page);
	cpu->regs_page = NULL;
}

/* ---- the state, as JSON ----------------------------------------------------------------- */
static u32 crc_table[256];
static void crc_init(void)
{
	for (u32 n = 0; n < 256; n++) {
		u32 c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}
static u32 crc32(const unsigned char *p, unsigned long n)
{
	u32 c = 0xFFFFFFFFu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static void owner(unsigned long f, char *out)
{
	unsigned long i;
	if (f >= HOST_FRAMES) {
		sprintf(out, "[\"x\",%lu]", f);
		return;
	}
	for (i = 0; i < TOTAL_SWITCHER_PAGES; i++)
		if (page_to_pfn(lg_switcher_pages[i]) == f) {
			sprintf(out, "[\"s\",%lu]", i);
			return;
		}
	if (the_lg.cpus[0].regs_page && __pa(the_lg.cpus[0].regs_page) >> PAGE_SHIFT == f) {
		sprintf(out, "[\"r\",0]");
		return;
	}
	for (i = 0; i < mem_pages; i++)
		if (launcher_frames[i] == (long)f) {
			sprintf(out, "[\"g\",%lu]", i);
			return;
		}
	sprintf(out, "[\"o\",0]");
}

static void emit(int *first, int a, int b, int c, const char *lvl, u64 value, u64 flags)
{
	char own[64];
	unsigned long pfn = (unsigned long)((value & PTE_PFN_MASK) >> PAGE_SHIFT);
	if (!strcmp(lvl, "pmd"))
		pfn = pmd_pfn(__pmd(value));
	owner(pfn, own);
	printf("%s[%d,%d,%d,\"%s\",%s,%llu]", *first ? "" : ",", a, b, c, lvl, own, (unsigned long long)flags);
	*first = 0;
}

static void dump_state(void)
{
	unsigned int s, i;
	printf("ok {\"dead\":");
	if (the_lg.dead) {
		putchar('"');
		for (const char *p = the_lg.dead; *p; p++) {
			if (*p == '"' || *p == '\\')
				printf("\\%c", *p);
			else if (*p == '\n')
				printf("\\n");
			else
				putchar(*p);
		}
		putchar('"');
	} else
		printf("null");
	printf(",\"cpu_pgd\":%d,\"linear\":%d,\"anomalies\":%d,\"slots\":[", the_lg.cpus[0].cpu_pgd,
	       the_lg.cpus[0].linear_pages, anomalies);
	for (s = 0; s < 4; s++) {
		struct pgdir *p = &the_lg.pgdirs[s];
		printf("%s[%d,%lu,%d,%d]", s ? "," : "", p->pgdir != NULL, p->gpgdir, p->switcher_mapped, p->last_host_cpu);
	}
	printf("],\"shadow\":[");
	for (s = 0; s < 4; s++) {
		pgd_t *top = the_lg.pgdirs[s].pgdir;
		int first = 1;
		printf("%s[", s ? "," : "");
		for (i = 0; top && i < PTRS_PER_PGD; i++) {
			pgd_t g = top[i];
			if (!pgd_val(g))
				continue;
			emit(&first, i, -1, -1, "pgd", pgd_val(g), pgd_flags(g));
			if (!(pgd_flags(g) & _PAGE_PRESENT) || pgd_pfn(g) >= HOST_FRAMES)
				continue;
#ifdef CONFIG_X86_PAE
			pmd_t *mids = __va(pgd_pfn(g) << PAGE_SHIFT);
			for (unsigned j = 0; j < PTRS_PER_PMD; j++) {
				if (!pmd_val(mids[j]))
					continue;
				emit(&first, i, j, -1, "pmd", pmd_val(mids[j]), pmd_flags(mids[j]));
				if (!(pmd_flags(mids[j]) & _PAGE_PRESENT) || pmd_pfn(mids[j]) >= HOST_FRAMES)
					continue;
				pte_t *ptes = __va(pmd_pfn(mids[j]) << PAGE_SHIFT);
				for (unsigned k = 0; k < PTRS_PER_PTE; k++)
					if (pte_val(ptes[k]))
						emit(&first, i, j, k, "pte", pte_val(ptes[k]), pte_flags(ptes[k]));
			}
#else
			pte_t *ptes = __va(pgd_pfn(g) << PAGE_SHIFT);
			for (unsigned k = 0; k < PTRS_PER_PTE; k++)
				if (pte_val(ptes[k]))
					emit(&first, i, -1, k, "pte", pte_val(ptes[k]), pte_flags(ptes[k]));
#endif
		}
		printf("]");
	}
	printf("],\"refs\":[");
	int first = 1;
	for (unsigned long f = 1; f < HOST_FRAMES; f++) {
		if (!frame_used[f])
			continue;
		char own[64];
		owner(f, own);
		printf("%s[%s,%d]", first ? "" : ",", own, mem_map[f].count);
		first = 0;
	}
	printf("],\"pages\":{");
	first = 1;
	for (i = 0; i < mem_pages; i++) {
		long f = launcher_frames[i];
		if (f <= 0)
			continue;
		printf("%s\"%u\":%u", first ? "" : ",", i, crc32(host_mem + f * PAGE_SIZE, PAGE_SIZE));
		first = 0;
	}
	printf("}}\n");
}

/* ---- the command loop --------------------------------------------------------------------- */
static unsigned char hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

int main(void)
{
	static char line[1 << 16];
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	crc_init();
	host_mem = calloc(HOST_FRAMES, PAGE_SIZE);
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[16];
		unsigned long long a[8] = {0};
		int n = sscanf(line, "%15s %llu %llu %llu %llu %llu %llu", cmd, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5]);
		struct lg_cpu *cpu = &the_lg.cpus[0];
		if (n < 1)
			continue;
		if (!strcmp(cmd, "new")) { /* mem_pages nr_cpus switcher_addr mem_base device_limit */
			memset(&the_lg, 0, sizeof(the_lg));
			memset(mem_map, 0, sizeof(mem_map));
			memset(frame_used, 0, sizeof(frame_used));
			memset(launcher_frames, 0, sizeof(launcher_frames));
			fail_after = -1;
			fail_count = anomalies = 0;
			rand_head = rand_tail = 0;
			mem_pages = a[0];
			nr_host_cpus = a[1];
			current_host_cpu = 0;
			switcher_addr = a[2];
			for (unsigned k = 0; k < TOTAL_SWITCHER_PAGES; k++)
				switcher_pages[k] = &mem_map[alloc_frame()];
			the_lg.mem_base = (void *)(unsigned long)a[3];
			the_lg.pfn_limit = a[0];
			the_lg.device_limit = a[4];
			the_lg.nr_cpus = 1;
			cpu->lg = &the_lg;
			printf("ok\n");
		} else if (!strcmp(cmd, "launch")) {
			printf("ok %d\n", launch());
		} else if (!strcmp(cmd, "rand")) { /* rand v (one value per command) */
			rand_queue[rand_tail++ % (1 << 16)] = (u32)a[0];
			printf("ok\n");
		} else if (!strcmp(cmd, "mem")) { /* mem gpa hexbytes */
			char hex[1 << 15];
			unsigned long long gpa;
			unsigned char bytes[1 << 14];
			sscanf(line, "%*s %llu %32767s", &gpa, hex);
			unsigned len = strlen(hex) / 2;
			for (unsigned k = 0; k < len; k++)
				bytes[k] = hexval(hex[2 * k]) << 4 | hexval(hex[2 * k + 1]);
			printf(copy_to_launcher(mem_base() + gpa, bytes, len) ? "ok 0\n" : "ok 1\n");
		} else if (!strcmp(cmd, "hcall")) {
			do_hcall(cpu, a[0], a[1], a[2], a[3], a[4]);
			printf("ok\n");
		} else if (!strcmp(cmd, "fault")) {
			unsigned long info;
			const char *out = page_fault(cpu, a[0], a[1], &info);
			printf("ok %s %lu\n", out, info);
		} else if (!strcmp(cmd, "walk")) { /* walk vaddr write user */
			int err, r = hw_walk(cpu, a[0], a[1], a[2], &err);
			printf("ok %d %d\n", r, err);
		} else if (!strcmp(cmd, "enter")) {
			printf("ok %d\n", enter_guest(cpu));
		} else if (!strcmp(cmd, "cpu")) {
			current_host_cpu = a[0];
			printf("ok\n");
		} else if (!strcmp(cmd, "fail")) { /* fail count after */
			fail_count = a[0];
			fail_after = a[0] ? (int)a[1] : -1;
			printf("ok\n");
		} else if (!strcmp(cmd, "teardown")) {
			teardown();
			printf("ok\n");
		} else if (!strcmp(cmd, "kfmt")) {
			kfmt_command(line);
		} else if (!strcmp(cmd, "gpa")) { /* gpa vaddr: the door to guest_pa (see guest_pa_door) */
			static unsigned long paddr; /* static: kept across the longjmp of an oops */
			static bool ok;
			paddr = 0;
			ok = false;
			if (!the_lg.dead) {
				if (sigsetjmp(oops_jmp, 1)) {
					oops_kill(cpu);
					ok = false;
					paddr = 0;
				} else {
					ok = __guest_pa(cpu, a[0], &paddr);
					guest_pa(cpu, a[0]);
				}
			}
			printf("ok %d %lu\n", ok, paddr);
		} else if (!strcmp(cmd, "state")) {
			dump_state();
		} else {
			printf("err unknown command %s\n", cmd);
		}
		fflush(stdout);
	}
	return 0;
}
