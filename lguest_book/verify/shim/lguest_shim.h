/*
 * lguest-book referee 1: the kernel around page_tables.c, written for this project.
 *
 * page_tables.c (Linux 4.7) is compiled as it is, as a 32-bit x86 program (gcc -m32), once
 * without and once with CONFIG_X86_PAE.  Compiling for i386 gives the C its real types for
 * free: unsigned long and pointers are 32 bits, -1UL is 0xffffffff, ~switcher_addr + 1 wraps
 * in 32 bits, and PAE entries are 64-bit integers.  A 64-bit Python cannot load 32-bit code,
 * so the referee is a small program the Python side talks to through a pipe (see driver.c).
 *
 * Every definition below is written from the Linux 4.7 definition it stands for (the file
 * and macro or function are named beside it; ASSUMPTIONS.md in this folder lists each one
 * with a link and any simplification), NOT from the Python model: a referee that shares the
 * model's assumptions cannot catch them.  Where the kernel leaves a choice to the machine
 * (which CPU features the host has, how much memory), the choice is stated as such.
 *
 * The order follows the kernel's headers: page_types.h, pgtable_types.h, pgtable*.h, then
 * mm (the allocator, struct page), then drivers/lguest/lg.h, which page_tables.c includes
 * last and whose accessor macros therefore hide the kernel's.
 */
#ifndef LGUEST_BOOK_SHIM_H
#define LGUEST_BOOK_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- include/linux/types.h, compiler.h, kernel.h, errno-base.h ------------------------------- */
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;
#ifndef __cplusplus
typedef _Bool bool;
#define true 1
#define false 0
#endif
#define __user
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ENOMEM 12
#define EFAULT 14
#define GFP_KERNEL 0

/* ---- arch/x86/include/asm/page_types.h, page_32_types.h ---------------------------------------
 * PAGE_SIZE is an unsigned long (_AC(1,UL)), so PAGE_MASK is the 32-bit 0xfffff000 and
 * ~PAGE_MASK the 32-bit 0xfff.  __PHYSICAL_MASK_SHIFT is 44 with PAE, 32 without. */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))

#ifdef CONFIG_X86_PAE
typedef u64 phys_addr_t;               /* include/linux/types.h: CONFIG_PHYS_ADDR_T_64BIT */
#define __PHYSICAL_MASK_SHIFT 44
#else
typedef u32 phys_addr_t;
#define __PHYSICAL_MASK_SHIFT 32
#endif
#define __PHYSICAL_MASK ((phys_addr_t)((1ULL << __PHYSICAL_MASK_SHIFT) - 1))
/* The cast to signed long sign-extends the 32-bit PAGE_MASK before the 64-bit AND under PAE:
 * the frame bits of a PAE entry are 12..43, not 12..31. */
#define PHYSICAL_PAGE_MASK (((signed long)PAGE_MASK) & __PHYSICAL_MASK)

/* ---- arch/x86/include/asm/pgtable-3level_types.h / pgtable-2level_types.h --------------------- */
#ifdef CONFIG_X86_PAE
typedef u64 pteval_t;
typedef u64 pmdval_t;
typedef u64 pgdval_t;
typedef u64 pgprotval_t;
#define PGDIR_SHIFT 30
#define PTRS_PER_PGD 4
#define PMD_SHIFT 21
#define PTRS_PER_PMD 512
#define PTRS_PER_PTE 512
#else
typedef u32 pteval_t;
typedef u32 pmdval_t;
typedef u32 pgdval_t;
typedef u32 pgprotval_t;
#define PGDIR_SHIFT 22
#define PTRS_PER_PGD 1024
#define PMD_SHIFT PGDIR_SHIFT         /* asm-generic/pgtable-nopmd.h: the mid level is folded */
#define PTRS_PER_PMD 1
#define PTRS_PER_PTE 1024
#endif

/* ---- arch/x86/include/asm/pgtable_types.h ------------------------------------------------------ */
#define _PAGE_BIT_PRESENT 0
#define _PAGE_BIT_RW 1
#define _PAGE_BIT_USER 2
#define _PAGE_BIT_PWT 3
#define _PAGE_BIT_PCD 4
#define _PAGE_BIT_ACCESSED 5
#define _PAGE_BIT_DIRTY 6
#define _PAGE_BIT_PSE 7                /* 4 MB (or 2MB) page */
#define _PAGE_BIT_PAT 7                /* on 4KB pages: the same bit */
#define _PAGE_BIT_GLOBAL 8
#define _PAGE_BIT_NX 63
#define _PAGE_PRESENT ((pteval_t)1 << _PAGE_BIT_PRESENT)
#define _PAGE_RW ((pteval_t)1 << _PAGE_BIT_RW)
#define _PAGE_USER ((pteval_t)1 << _PAGE_BIT_USER)
#define _PAGE_PWT ((pteval_t)1 << _PAGE_BIT_PWT)
#define _PAGE_PCD ((pteval_t)1 << _PAGE_BIT_PCD)
#define _PAGE_ACCESSED ((pteval_t)1 << _PAGE_BIT_ACCESSED)
#define _PAGE_DIRTY ((pteval_t)1 << _PAGE_BIT_DIRTY)
#define _PAGE_PSE ((pteval_t)1 << _PAGE_BIT_PSE)
#define _PAGE_GLOBAL ((pteval_t)1 << _PAGE_BIT_GLOBAL)
#ifdef CONFIG_X86_PAE                  /* defined(CONFIG_X86_64) || defined(CONFIG_X86_PAE) */
#define _PAGE_NX ((pteval_t)1 << _PAGE_BIT_NX)
#else
#define _PAGE_NX ((pteval_t)0)
#endif
#define _PAGE_TABLE (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY)
#define __PAGE_KERNEL_EXEC (_PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL)
#define __PAGE_KERNEL (__PAGE_KERNEL_EXEC | _PAGE_NX)
#define __PAGE_KERNEL_RO (__PAGE_KERNEL & ~_PAGE_RW)
#define __PAGE_KERNEL_RX (__PAGE_KERNEL_EXEC & ~_PAGE_RW)

#define PTE_PFN_MASK ((pteval_t)PHYSICAL_PAGE_MASK)
#define PTE_FLAGS_MASK (~PTE_PFN_MASK)

typedef struct { pteval_t pte; } pte_t;
typedef struct { pmdval_t pmd; } pmd_t;
typedef struct { pgdval_t pgd; } pgd_t;
typedef struct { pgprotval_t pgprot; } pgprot_t;
#define __pte(x) ((pte_t){ (x) })
#define __pmd(x) ((pmd_t){ (x) })
#define __pgd(x) ((pgd_t){ (x) })
#define __pgprot(x) ((pgprot_t){ (x) })
#define pte_val(x) ((x).pte)
#define pmd_val(x) ((x).pmd)
#define pgd_val(x) ((x).pgd)
#define pgprot_val(x) ((x).pgprot)
#define PAGE_KERNEL_RX __pgprot(__PAGE_KERNEL_RX)

/* pte_flags(): every bit outside the frame mask, so under PAE NX and bits 52..62 too. */
static inline pteval_t kernel_pte_flags(pte_t pte) { return pte_val(pte) & PTE_FLAGS_MASK; }
#define pte_flags(x) kernel_pte_flags(x)

/* The kernel's own pgd_flags() (pgtable_types.h) and pmd_flags()/pmd_pfn() (PSE-aware, 2 MiB
 * frame mask for a large PMD).  lg.h hides them from page_tables.c (see below); they are kept
 * here, under their own names, only to say what lg.h replaces. */
static inline pgdval_t kernel_pgd_flags(pgd_t pgd) { return pgd_val(pgd) & PTE_FLAGS_MASK; }
#define PMD_PAGE_MASK (~((1UL << PMD_SHIFT) - 1))
#define PHYSICAL_PMD_PAGE_MASK (((signed long)PMD_PAGE_MASK) & __PHYSICAL_MASK)
static inline pmdval_t kernel_pmd_pfn_mask(pmd_t pmd)
{
	return (pmd_val(pmd) & _PAGE_PSE) ? PHYSICAL_PMD_PAGE_MASK : PTE_PFN_MASK;
}
static inline unsigned long kernel_pmd_pfn(pmd_t pmd)
{
	return (pmd_val(pmd) & kernel_pmd_pfn_mask(pmd)) >> PAGE_SHIFT;
}

/* ---- arch/x86/include/asm/pgtable.h ----------------------------------------------------------- */
static inline unsigned long pte_pfn(pte_t pte) { return (pte_val(pte) & PTE_PFN_MASK) >> PAGE_SHIFT; }
static inline int pte_dirty(pte_t pte) { return pte_flags(pte) & _PAGE_DIRTY; }
static inline pte_t pte_set_flags(pte_t pte, pteval_t set) { return __pte(pte_val(pte) | set); }
static inline pte_t pte_clear_flags(pte_t pte, pteval_t clear) { return __pte(pte_val(pte) & ~clear); }
/* pte_mkdirty sets _PAGE_DIRTY | _PAGE_SOFT_DIRTY; _PAGE_SOFT_DIRTY is 0 on 32-bit x86. */
static inline pte_t pte_mkdirty(pte_t pte) { return pte_set_flags(pte, _PAGE_DIRTY); }
static inline pte_t pte_mkyoung(pte_t pte) { return pte_set_flags(pte, _PAGE_ACCESSED); }
static inline pte_t pte_wrprotect(pte_t pte) { return pte_clear_flags(pte, _PAGE_RW); }
static inline unsigned long pgd_index(unsigned long a) { return (a >> PGDIR_SHIFT) & (PTRS_PER_PGD - 1); }
static inline unsigned long pmd_index(unsigned long a) { return (a >> PMD_SHIFT) & (PTRS_PER_PMD - 1); }
static inline unsigned long pte_index(unsigned long a) { return (a >> PAGE_SHIFT) & (PTRS_PER_PTE - 1); }

/* __supported_pte_mask (arch/x86/mm/init.c, setup_nx.c): starts as every bit; loses NX when
 * the CPU has no NX, keeps _PAGE_GLOBAL when it has PGE.  THE MACHINE'S CHOICE: this host has
 * PGE and no NX (the same host the model describes; lguest_book/x86.py says so too). */
static const pteval_t __supported_pte_mask = ~_PAGE_NX;
/* massage_pgprot(): a present protection keeps only the supported bits. */
static inline pgprotval_t massage_pgprot(pgprot_t pgprot)
{
	pgprotval_t protval = pgprot_val(pgprot);
	if (protval & _PAGE_PRESENT)
		protval &= __supported_pte_mask;
	return protval;
}
/* pfn_pte(): the frame widened to phys_addr_t before the shift, then the massaged protection. */
static inline pte_t pfn_pte(unsigned long page_nr, pgprot_t pgprot)
{
	return __pte(((phys_addr_t)page_nr << PAGE_SHIFT) | massage_pgprot(pgprot));
}

/* native_set_pte/set_pmd/set_pgd (pgtable-2level.h, pgtable-3level.h): a store of the whole
 * entry (the PAE version writes the high half first; nothing here runs concurrently). */
#define set_pte(p, v) (*(p) = (v))
#define set_pmd(p, v) (*(p) = (v))
#define set_pgd(p, v) (*(p) = (v))

/* ---- mm: struct page, the allocator, references (include/linux/mm.h, gfp.h, mm/page_alloc.c) ---
 * Host memory is HOST_FRAMES frames; the kernel's direct map is host_mem, so __va/__pa are an
 * offset.  Frame 0 is never handed out (x86 reserves the first page for the BIOS:
 * arch/x86/kernel/setup.c trim_bios_range()). */
#define HOST_FRAMES 12288 /* 48 MiB: THE MACHINE'S CHOICE, plenty for the referee's small guests */
struct page { int count; };            /* only the reference count (_refcount) matters here */
extern struct page mem_map[HOST_FRAMES];
extern unsigned char *host_mem;
#define __va(x) ((void *)(host_mem + (unsigned long)(x)))
#define __pa(x) ((unsigned long)((unsigned char *)(x) - host_mem))
#define page_to_pfn(p) ((unsigned long)((p) - mem_map))
#define pfn_to_page(n) (&mem_map[(n)])
#define pte_page(p) pfn_to_page(pte_pfn(p))
#define mk_pte(page, pgprot) pfn_pte(page_to_pfn(page), (pgprot))

unsigned long get_zeroed_page(int gfp); /* a zeroed page's kernel address, or 0 */
void free_page(unsigned long addr);     /* free_pages(addr, 0): nothing for addr 0 */
void get_page(struct page *page);
void put_page(struct page *page);       /* the last reference frees the page */
int get_user_pages_fast(unsigned long start, int nr_pages, int write, struct page **pages);
u32 prandom_u32(void);                  /* lib/random32.c: here, values the driver queues */
extern unsigned int current_host_cpu, nr_host_cpus;
#define raw_smp_processor_id() (current_host_cpu)
#define smp_processor_id() (current_host_cpu)
/* include/linux/cpumask.h: every possible CPU; the host's CPUs are 0..nr_host_cpus-1. */
#define for_each_possible_cpu(i) for ((i) = 0; (i) < nr_host_cpus; (i)++)

void shim_bug(const char *where);      /* BUG(): the host oopses in the Launcher's context */
#define BUG_ON(c) do { if (unlikely(c)) shim_bug(__func__); } while (0)
#define BUG() shim_bug(__func__)

/* ---- arch/x86/include/asm/lguest.h, include/linux/lguest.h ------------------------------------ */
/* struct lguest_pages is two pages: the register page, then the read-only state page. */
struct lguest_pages { unsigned char spare[2][4096]; };
/* THE HARNESS'S CHOICE: struct lguest_data's real layout has many fields; page_tables.c only
 * uses reserve_mem and kernel_address, and the trap handler cr2.  Their offsets are the
 * harness's (the Python side writes them at the same offsets). */
struct lguest_data { u32 cr2; u32 reserve_mem; u32 kernel_address; };
#define LGUEST_DATA_SIZE 12
/* SHARED_SWITCHER_PAGES is 1 (the Switcher's code fits one page); two per possible CPU. */
#define TOTAL_SWITCHER_PAGES (1 + 2 * nr_host_cpus)

/* ---- drivers/lguest/lg.h ---------------------------------------------------------------------- */
struct pgdir {
	unsigned long gpgdir;
	bool switcher_mapped;
	int last_host_cpu;
	pgd_t *pgdir;
};

struct lguest;
struct lg_cpu {                        /* the fields page_tables.c and the doors use */
	unsigned int id;
	struct lguest *lg;
	u32 esp1;
	u16 ss1;
	void *regs_page;                   /* a kernel virtual address */
	bool linear_pages;
	int cpu_pgd;
};

struct lguest {
	struct lguest_data __user *lguest_data;
	struct lg_cpu cpus[1];             /* NR_CPUS: the Guest has one CPU here */
	unsigned int nr_cpus;
	u32 pfn_limit;                     /* valid guest memory pages are < this */
	u32 device_limit;                  /* device memory is >= pfn_limit and < this */
	void __user *mem_base;
	unsigned long kernel_address;
	struct pgdir pgdirs[4];
	unsigned int stack_pages;
	const char *dead;
};

extern unsigned long switcher_addr;
extern struct page **lg_switcher_pages;

/* core.c */
bool lguest_address_ok(const struct lguest *lg, unsigned long addr, unsigned long len);
void __lgread(struct lg_cpu *cpu, void *b, unsigned long addr, unsigned bytes);
void __lgwrite(struct lg_cpu *cpu, unsigned long addr, const void *b, unsigned bytes);
/* lg.h's lgread/lgwrite: read into a variable of the type / write a variable of the type. */
#define lgread(cpu, addr, type) ({ type _v; __lgread((cpu), &_v, (addr), sizeof(_v)); _v; })
#define lgwrite(cpu, addr, type, val) \
	do { type _w = (val); __lgwrite((cpu), (addr), &_w, sizeof(_w)); } while (0)

/* lg.h's own accessors, "the first 12 or the last 20 bits": they hide the kernel's.  Flags are
 * the low 12 bits only (~PAGE_MASK is a 32-bit 0xfff), the frame is every bit above them,
 * neither masked to the physical width nor, for a PSE entry, to 2 MiB.  Function-like macros,
 * as in lg.h: find_spte()'s parameters named pgd_flags/pmd_flags are not expanded. */
#define pgd_flags(x) (pgd_val(x) & ~PAGE_MASK)
#define pgd_pfn(x) (pgd_val(x) >> PAGE_SHIFT)
#define pmd_flags(x) (pmd_val(x) & ~PAGE_MASK)
#define pmd_pfn(x) (pmd_val(x) >> PAGE_SHIFT)

/* lg.h's kill_guest(): the first reason is kept, formatted by the kernel's kasprintf()
 * (lib/vsprintf.c rules, implemented in driver.c -- not glibc's printf). */
void kill_guest(struct lg_cpu *cpu, const char *fmt, ...);

/* asm/uaccess.h get_user/put_user of a 32-bit field: 0, or -EFAULT (get_user zeroes x). */
int shim_get_user(u32 *x, unsigned long uaddr);
int shim_put_user(u32 x, unsigned long uaddr);
#define get_user(x, ptr) ({ u32 _g = 0; int _e = shim_get_user(&_g, (unsigned long)(ptr)); (x) = _g; _e; })
#define put_user(x, ptr) shim_put_user((x), (unsigned long)(ptr))

/* interrupts_and_traps.c */
void pin_stack_pages(struct lg_cpu *cpu);

/* lg.h's prototypes of page_tables.c's public functions */
bool demand_page(struct lg_cpu *cpu, unsigned long vaddr, int errcode, unsigned long *iomem);
void pin_page(struct lg_cpu *cpu, unsigned long vaddr);
void guest_pagetable_flush_user(struct lg_cpu *cpu);
bool __guest_pa(struct lg_cpu *cpu, unsigned long vaddr, unsigned long *paddr);
unsigned long guest_pa(struct lg_cpu *cpu, unsigned long vaddr);
void guest_pagetable_clear_all(struct lg_cpu *cpu);
void guest_new_pagetable(struct lg_cpu *cpu, unsigned long pgtable);
void guest_set_pte(struct lg_cpu *cpu, unsigned long gpgdir, unsigned long vaddr, pte_t gpte);
void guest_set_pgd(struct lguest *lg, unsigned long gpgdir, u32 idx);
#ifdef CONFIG_X86_PAE
void guest_set_pmd(struct lguest *lg, unsigned long pmdp, u32 idx);
#endif
int init_guest_pagetable(struct lguest *lg);
void page_table_guest_data_init(struct lg_cpu *cpu);
void free_guest_pagetable(struct lguest *lg);
void map_switcher_in_guest(struct lg_cpu *cpu, struct lguest_pages *pages);
#endif /* LGUEST_BOOK_SHIM_H */
