/*
 * lguest-book referee 1: the kernel around page_tables.c, written for this project.
 *
 * page_tables.c (Linux 4.7) is compiled as it is, as a 32-bit x86 program (gcc -m32), once
 * without and once with CONFIG_X86_PAE.  Compiling for i386 gives the C its real types for
 * free: unsigned long and pointers are 32 bits, -1UL is 0xffffffff, ~switcher_addr + 1 wraps
 * in 32 bits, and PAE entries are 64-bit integers.  (A 64-bit build would need every
 * unsigned long in the file retyped, which is exactly the kind of edit a referee must not
 * make.)  A 64-bit Python cannot load 32-bit code, so the referee is a small program the
 * Python side talks to through a pipe (see driver.c).
 *
 * This header supplies only what the file uses: the x86 page-table types and helpers of
 * arch/x86/include/asm/pgtable*.h, a host with frames, reference counts and an allocator
 * that can be told to fail, the Launcher's mapping of guest memory, lg.h's structures,
 * kill_guest, lgread/lgwrite with core.c's bounds check, prandom_u32 fed by the driver, and
 * the current host CPU.  It mirrors the model's host (lguest_book/host.py) where the C file
 * leaves a choice: the host has global pages and no NX; frame 0 is never handed out.
 */
#ifndef LGUEST_BOOK_SHIM_H
#define LGUEST_BOOK_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
#define GFP_KERNEL 0

/* ---- x86 paging ------------------------------------------------------------------------ */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))

#ifdef CONFIG_X86_PAE
typedef u64 pteval_t;
typedef u64 pmdval_t;
typedef u64 pgdval_t;
typedef u64 pgprotval_t;
typedef u64 phys_addr_t;
#define PGDIR_SHIFT 30
#define PTRS_PER_PGD 4
#define PMD_SHIFT 21
#define PTRS_PER_PMD 512
#define PTRS_PER_PTE 512
#define __PHYSICAL_MASK ((phys_addr_t)((1ULL << 44) - 1))
#define _PAGE_NX ((pteval_t)1 << 63)
#else
typedef u32 pteval_t;
typedef u32 pmdval_t;
typedef u32 pgdval_t;
typedef u32 pgprotval_t;
typedef u32 phys_addr_t;
#define PGDIR_SHIFT 22
#define PTRS_PER_PGD 1024
#define PMD_SHIFT 22
#define PTRS_PER_PMD 1
#define PTRS_PER_PTE 1024
#define __PHYSICAL_MASK ((phys_addr_t)0xffffffffUL)
#define _PAGE_NX ((pteval_t)0)
#endif
#define PMD_SIZE ((phys_addr_t)1 << PMD_SHIFT)

#define _PAGE_PRESENT ((pteval_t)0x001)
#define _PAGE_RW ((pteval_t)0x002)
#define _PAGE_USER ((pteval_t)0x004)
#define _PAGE_PWT ((pteval_t)0x008)
#define _PAGE_PCD ((pteval_t)0x010)
#define _PAGE_ACCESSED ((pteval_t)0x020)
#define _PAGE_DIRTY ((pteval_t)0x040)
#define _PAGE_PSE ((pteval_t)0x080)
#define _PAGE_GLOBAL ((pteval_t)0x100)
#define _PAGE_TABLE (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY)
#define __PAGE_KERNEL_EXEC (_PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL)
#define __PAGE_KERNEL (__PAGE_KERNEL_EXEC | _PAGE_NX)
#define __PAGE_KERNEL_RO (__PAGE_KERNEL & ~_PAGE_RW)
#define __PAGE_KERNEL_RX (__PAGE_KERNEL_EXEC & ~_PAGE_RW)

#define PHYSICAL_PAGE_MASK ((pteval_t)(PAGE_MASK & __PHYSICAL_MASK))
#define PHYSICAL_PMD_PAGE_MASK ((pteval_t)(~(PMD_SIZE - 1) & __PHYSICAL_MASK))
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

/* Function-like macros, as the kernel's must be here: find_spte() has parameters named
 * pgd_flags and pmd_flags, which would hide functions of those names. */
static inline pteval_t shim_pte_flags(pte_t p) { return p.pte & PTE_FLAGS_MASK; }
static inline unsigned long shim_pte_pfn(pte_t p) { return (p.pte & PTE_PFN_MASK) >> PAGE_SHIFT; }
static inline pgdval_t shim_pgd_flags(pgd_t p) { return p.pgd & PTE_FLAGS_MASK; }
static inline unsigned long shim_pgd_pfn(pgd_t p) { return (p.pgd & PTE_PFN_MASK) >> PAGE_SHIFT; }
static inline pmdval_t pmd_pfn_mask(pmd_t p) { return (p.pmd & _PAGE_PSE) ? PHYSICAL_PMD_PAGE_MASK : PTE_PFN_MASK; }
static inline pmdval_t shim_pmd_flags(pmd_t p) { return p.pmd & ~pmd_pfn_mask(p); }
static inline unsigned long shim_pmd_pfn(pmd_t p) { return (p.pmd & pmd_pfn_mask(p)) >> PAGE_SHIFT; }
#define pte_flags(p) shim_pte_flags(p)
#define pte_pfn(p) shim_pte_pfn(p)
#define pgd_flags(p) shim_pgd_flags(p)
#define pgd_pfn(p) shim_pgd_pfn(p)
#define pmd_flags(p) shim_pmd_flags(p)
#define pmd_pfn(p) shim_pmd_pfn(p)
static inline unsigned long pgd_index(unsigned long a) { return (a >> PGDIR_SHIFT) & (PTRS_PER_PGD - 1); }
static inline unsigned long pmd_index(unsigned long a) { return (a >> PMD_SHIFT) & (PTRS_PER_PMD - 1); }
static inline unsigned long pte_index(unsigned long a) { return (a >> PAGE_SHIFT) & (PTRS_PER_PTE - 1); }

/* The modelled host CPU has global pages and no NX: massage_pgprot() strips NX only. */
static const pteval_t __supported_pte_mask = ~_PAGE_NX;
static inline pgprotval_t massage_pgprot(pgprot_t p)
{
	pgprotval_t v = pgprot_val(p);
	if (v & _PAGE_PRESENT)
		v &= __supported_pte_mask;
	return v;
}
static inline pte_t pfn_pte(unsigned long pfn, pgprot_t prot)
{
	return __pte(((phys_addr_t)pfn << PAGE_SHIFT) | massage_pgprot(prot));
}
static inline pte_t pte_mkyoung(pte_t p) { return __pte(p.pte | _PAGE_ACCESSED); }
static inline pte_t pte_mkdirty(pte_t p) { return __pte(p.pte | _PAGE_DIRTY); } /* no soft-dirty on i386 */
static inline pte_t pte_wrprotect(pte_t p) { return __pte(p.pte & ~_PAGE_RW); }
static inline int pte_dirty(pte_t p) { return (p.pte & _PAGE_DIRTY) != 0; }

#define set_pte(p, v) (*(p) = (v))
#define set_pmd(p, v) (*(p) = (v))
#define set_pgd(p, v) (*(p) = (v))
#define native_set_pte set_pte

/* ---- the host: frames, references, allocator -------------------------------------------- */
#define HOST_FRAMES 12288 /* 48 MiB of host memory: plenty for the referee's small guests */
struct page { int count; };
extern struct page mem_map[HOST_FRAMES];
extern unsigned char *host_mem; /* frame n lives at host_mem + n * PAGE_SIZE */

#define __va(x) ((void *)(host_mem + (unsigned long)(x)))
#define __pa(x) ((unsigned long)((unsigned char *)(x) - host_mem))
#define page_to_pfn(p) ((unsigned long)((p) - mem_map))
#define pfn_to_page(n) (&mem_map[(n)])
#define pte_page(p) pfn_to_page(pte_pfn(p))
static inline pte_t mk_pte(struct page *page, pgprot_t prot) { return pfn_pte(page_to_pfn(page), prot); }

unsigned long get_zeroed_page(int gfp);
void free_page(unsigned long addr);
void get_page(struct page *page);
void put_page(struct page *page);
int get_user_pages_fast(unsigned long start, int nr_pages, int write, struct page **pages);
u32 prandom_u32(void);
extern unsigned int current_host_cpu, nr_host_cpus;
#define raw_smp_processor_id() (current_host_cpu)
#define smp_processor_id() (current_host_cpu)
#define for_each_possible_cpu(i) for ((i) = 0; (i) < nr_host_cpus; (i)++)

void shim_bug(const char *where);
#define BUG_ON(c) do { if (unlikely(c)) shim_bug(__func__); } while (0)
#define BUG() shim_bug(__func__)

/* ---- lg.h ------------------------------------------------------------------------------ */
struct lguest_pages { unsigned char spare[2][4096]; };
struct lguest_data { u32 cr2; u32 reserve_mem; u32 kernel_address; }; /* the model's offsets */
#define LGUEST_DATA_SIZE 12

struct pgdir {
	unsigned long gpgdir;
	bool switcher_mapped;
	int last_host_cpu;
	pgd_t *pgdir;
};

struct lguest;
struct lg_cpu {
	unsigned int id;
	struct lguest *lg;
	unsigned long regs_page; /* a kernel virtual address, as in the kernel */
	u32 ss1;
	unsigned long esp1;
	int cpu_pgd;
	bool linear_pages;
};

struct lguest {
	struct lguest_data __user *lguest_data;
	struct lg_cpu cpus[1];
	unsigned int nr_cpus;
	u32 pfn_limit;
	u32 device_limit;
	void __user *mem_base;
	unsigned long kernel_address;
	struct pgdir pgdirs[4];
	unsigned int stack_pages;
	char *dead;
};

extern unsigned long switcher_addr;
extern struct page **lg_switcher_pages;
#define TOTAL_SWITCHER_PAGES (1 + 2 * nr_host_cpus)

void kill_guest(struct lg_cpu *cpu, const char *fmt, ...);
void __lgread(struct lg_cpu *cpu, void *b, unsigned long addr, unsigned bytes);
void __lgwrite(struct lg_cpu *cpu, unsigned long addr, const void *b, unsigned bytes);
#define lgread(cpu, addr, type) ({ type _v; __lgread((cpu), &_v, (addr), sizeof(_v)); _v; })
#define lgwrite(cpu, addr, type, val) do { type _v = (val); __lgwrite((cpu), (addr), &_v, sizeof(_v)); } while (0)
int shim_get_user(u32 *x, unsigned long uaddr);
int shim_put_user(u32 x, unsigned long uaddr);
#define get_user(x, ptr) ({ u32 _g = 0; int _e = shim_get_user(&_g, (unsigned long)(ptr)); (x) = _g; _e; })
#define put_user(x, ptr) shim_put_user((x), (unsigned long)(ptr))

void pin_stack_pages(struct lg_cpu *cpu);

/* lg.h's prototypes of the file's public functions */
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
