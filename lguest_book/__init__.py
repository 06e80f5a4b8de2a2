"""lguest-book: an executable model of lguest's shadow page tables (Linux 4.7).

Start with :class:`lguest_book.Guest`; the port of page_tables.c is
:mod:`lguest_book.page_tables`, one Python function per C function.
"""

from .guest import Access, Guest, Process
from .host import Host, KernelOops, Launcher
from .lguest import Lguest, LgCpu, Pgdir, PrandomSource
from .x86 import NONPAE, PAE

__version__ = "0.1.0"

__all__ = [
    "Access", "Guest", "Process", "Host", "KernelOops", "Launcher", "Lguest", "LgCpu",
    "Pgdir", "PrandomSource", "NONPAE", "PAE", "__version__",
]
