"""One way to print a number (lguest_book/fmt.py): every public repr and CLI line prints
addresses, entries, frames and indices in hex of the layout's width, counts in decimal.

``number_problems(text, pae)`` is a small checker.  It finds every number in a text and
decides what the number is from its label:

* a *key-value* number (``hpa=0x..``, ``'guest_pte': 0x..``, ``value=(1, 2)``) is judged by
  its key: an address/entry/frame/index key wants hex of exactly its width (decimal is wrong
  from 10 up); a count key wants decimal;
* a number in prose (``frame 0x08016[0x048]``, ``at 0x00209120``) must, in hex, have one of
  the widths the rule allows (3, 8 and 5 without PAE; 3, 8 and 16 with it) and, in decimal
  from 10 up, not follow a word that names an address ("frame", "at", "pfn", ...).

Kill messages are the C's own text (the kernel's printf rules) and are left out of the check.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lguest_book import Guest, cli, flaws, fmt
from lguest_book import inspect as li
from lguest_book import practice
from lguest_book.trace import Tracer

LAYOUTS = pytest.mark.parametrize("pae", [False, True], ids=["nonpae", "pae"])

_NUMBER = re.compile(r"(?<![\w.])(-?0x[0-9a-fA-F]+|-?\d+)(?![\w.])")
# keys (dict keys, keyword arguments, "name:" lines) and what they hold
_VADDR_KEYS = {"vaddr", "kernel_address", "switcher_addr", "mem_base", "start", "uaddr"}
_ENTRY_KEYS = {"value", "pte", "gpte", "spte", "gpgd", "gpmd", "gentry", "spgd", "spmd", "hpa", "gpgdir",
               "addr", "guest", "shadow", "guest_pte", "shadow_pte", "stale_shadow_entry",
               "guest_pte_after_write", "guest_pte_after", "pgd_flags", "pmd_flags", "where"}
_FRAME_KEYS = {"frame", "pfn", "virtpfn", "pgdir", "pfn_limit", "device_limit", "linear_pages", "guest_frame",
               "host_frame", "victim_frame", "last_slot_pte_page", "frame_after_top_level"}
_INDEX_KEYS = {"index", "offset"}
_BITS_KEYS = {"errcode", "info", "bits", "call"}  # flag bits, an error code, a hypercall number
_COUNT_KEY = re.compile(r"(refs|count|faults|asked|anyway|iterations|after|before|set_ptes|slot|cpu|seed|"
                        r"entries|fake_entries|id|i|idx|depth|lineno|nr_cpus|write|pages)(_\w+)?$")
# prose: a decimal from 10 up after one of these words is an address written the wrong way
_ADDRESS_WORDS = {"frame", "pfn", "at", "address", "addr", "entry", "pte", "page", "gpgdir", "hpa", "vaddr",
                  "paddr", "to", "holds", "is"}


def _kind(key: str) -> str | None:
    if key in _VADDR_KEYS:
        return "vaddr"
    if key in _ENTRY_KEYS:
        return "entry"
    if key in _FRAME_KEYS:
        return "frame"
    if key in _INDEX_KEYS:
        return "index"
    if key in _BITS_KEYS:
        return "bits"
    if _COUNT_KEY.fullmatch(key) or _COUNT_KEY.search(key):
        return "count"
    return None


def _width(kind: str, pae: bool) -> int | None:
    return {"vaddr": 8, "entry": fmt.entry_digits(pae=pae), "frame": fmt.frame_digits(pae=pae), "index": 3}.get(kind)


def number_problems(text: str, pae: bool) -> list[str]:
    """What in ``text`` breaks the rule, one line per number (empty: it keeps the rule)."""
    allowed = {3, 8, fmt.entry_digits(pae=pae), fmt.frame_digits(pae=pae)}
    problems = []
    for line in text.splitlines():
        if "killed" in line or "kill" in line.lower() and "reason" in line:  # the C's own text
            line = line.split("killed", 1)[0]
        for m in _NUMBER.finditer(line):
            token = m.group(1)
            is_hex = token.lstrip("-").startswith("0x")
            value = int(token, 16 if is_hex else 10)
            # the text just before the number tells its label
            prefix = line[: m.start()]
            key = re.search(r"""['"]?([A-Za-z_]\w*)['"]?\s*[=:]\s*(?:\((?:[^()]*,\s*)?)?['"]?$""", prefix)
            after_bracket = prefix.rstrip().endswith("[") and re.search(r"0x[0-9a-f]+\[$", line[: m.start()])
            digits = len(token.lstrip("-")) - 2 if is_hex else None
            where = f"{token!r} in {line.strip()!r}"
            if after_bracket:
                kind = "index"
            elif key:
                kind = _kind(key.group(1).lower())
            else:
                kind = None
            if key or after_bracket:
                if kind in ("vaddr", "entry", "frame", "index"):
                    if not is_hex and value >= 10:
                        problems.append(f"{where}: a {kind} in decimal")
                    elif is_hex and value >= 0 and digits != _width(kind, pae):
                        problems.append(f"{where}: a {kind} wants {_width(kind, pae)} hex digits, not {digits}")
                    continue
                if kind == "count":
                    if is_hex:
                        problems.append(f"{where}: a count in hex")
                    continue
                if kind == "bits":
                    continue
            if is_hex:
                if digits not in allowed and value >= 0:
                    problems.append(f"{where}: {digits} hex digits is no width of the rule ({sorted(allowed)})")
            elif value >= 10:
                word = re.search(r"([A-Za-z_]\w*)[ (]+$", prefix)
                if word and word.group(1).lower() in _ADDRESS_WORDS:
                    problems.append(f"{where}: an address in decimal after {word.group(1)!r}")
    return problems


# --- the checker itself -------------------------------------------------------------------------
def test_the_checker_finds_what_the_issue_found():
    bad = [
        "wrote shadow entry (32787, 1)",  # a pointer as a tuple of decimals
        "Step(level='pte', index=72, where=(32789, 72), value=134307943, present=True)",
        "{'kernel_address': 3221225472, 'switcher_addr': 4290772992}",
        "   pages_asked: 0x40",
        "{'guest_pte': 3149863}",
        "Access(outcome='ok', hpa=0x8016000, faults=1, info=0x0)",  # hpa 7 digits wide
        "host frame 32790 stands for guest page 768",
    ]
    for text in bad:
        assert number_problems(text, pae=False), text
    assert number_problems("Step(level='pte', index=0x048, where=0x00209120, value=0x00300067, present=True)", pae=True)
    good = [
        "Access(outcome='ok', hpa=0x08016000, faults=1, info=0x0)",
        "wrote shadow entry frame 0x08015[0x048]: 0x00000000 -> 0x08016067",
        "   refs_while_mapped: 2", "   pages_asked: 64", "The access succeeded after 1 fault(s)",
        "A non-PAE guest with 4096 pages of memory has booted under lguest.",
    ]
    for text in good:
        assert number_problems(text, pae=False) == [], text


# --- the package keeps the rule -------------------------------------------------------------------
def _faulted_guest(pae: bool):
    g = Guest(pae=pae)
    p = g.new_process("init")
    g.switch_to(p)
    g.map(0x08048000, 0x300, accessed=False)
    return g, p


def _public_reprs(pae: bool) -> list[str]:
    g, p = _faulted_guest(pae)
    out = [repr(g), repr(p), repr(g.cpu), repr(g.host), repr(g.lg), repr(g.lg.launcher)]
    out += [repr(pg) for pg in g.lg.pgdirs]
    with Tracer() as t:
        out.append(repr(g.touch(0x08048000, write=True, user=True)))
        g.set_pte(0x08049000, (0x301 << 12) | 0x67)
        out.append(repr(g.touch(0x08049000, user=True)))
    out.append(t.trace.render())
    out += [repr(e) for e in t.trace[:60]]
    out += [repr(t.trace.reads()), repr(t.trace.writes()), repr(t.trace.allocations()), repr(t.trace.releases())]
    out.append(repr(g.touch(0xC0000000 + (g.lg.pfn_limit + 3) * 4096)))  # beyond memory: a guest fault
    out += _access_reprs(pae)
    for level in ("pgd", "pmd", "pte") if pae else ("pgd", "pte"):
        out.append(repr(li.shadow_table(g, level=level, vaddr=0x08048000)[:80]))
        out.append(repr(li.guest_table(g, level=level, vaddr=0x08048000)[:80]))
        out += [e.text for e in li.guest_table(g, level=level, vaddr=0x08048000)[:80]]
    out += [repr(li.walk_shadow(g, 0x08048000)), repr(li.walk_guest(g, 0x08048000)), repr(li.limits(g)),
            repr(li.pgdir_cache(g)), repr(li.refcounts(g)), repr(li.compare(g, 0x08048000, 3)),
            repr(li.shadow_mappings(g)), repr(li.guest_mappings(g, below=0x10000000)),
            repr(li.owner(g, g.lg.launcher.frames[0x300])), repr(li.decode(g, "pte", 0x48, 0x08048000, 0x300067)),
            g.x86.describe(0x300067), repr(g.x86)]
    for f in flaws.FLAWS:
        out.append(repr(f.demo(pae)))
    return out


def _accesses(pae: bool) -> dict:
    """One Access of each kind whose repr has something to say about hpa or info."""
    g, _ = _faulted_guest(pae)
    out = {"ok": g.touch(0x08048000, user=True)}
    g.map(0x08050000, g.lg.pfn_limit + 3)  # device memory
    out["mmio"] = g.touch(0x08050123, user=True)
    g.map(0x08058000, 0x301, writable=False)
    g.touch(0x08058000, user=True)
    out["guest-fault"] = g.touch(0x08058000, write=True, user=True)  # error code 7
    g.set_pte(0x08060000, 0xFFFFF000 | 0x7)  # beyond memory and devices: the Host kills the Guest
    out["killed"] = g.touch(0x08060000, user=True)
    out["dead"] = g.touch(0x08048000)
    return out


def _access_reprs(pae: bool) -> list[str]:
    return [repr(a) for a in _accesses(pae).values()]


@LAYOUTS
def test_access_reprs_print_hpa_and_info_by_the_rule(pae):
    a = _accesses(pae)
    assert [x.outcome for x in a.values()] == list(a)
    width = fmt.entry_digits(pae=pae)
    # an address reached, and a device's physical address: as wide as the layout's physical addresses
    assert f"hpa=0x{a['ok'].hpa:0{width}x}," in repr(a["ok"])
    assert repr(a["mmio"]).endswith(f"info=0x{a['mmio'].info:0{width}x})")
    assert repr(a["mmio"]) == (f"Access(outcome='mmio', hpa=—, faults=1, info={fmt.paddr(a['mmio'].info, pae=pae)})")
    # an error code is flag bits (as traces print errcode), not an address
    assert a["guest-fault"].info == 7 and repr(a["guest-fault"]).endswith("hpa=—, faults=1, info=0x7)")
    # no address reached, nothing to report: the package's "no value", never -1 or a bare 0x0
    assert a["killed"].hpa == -1 and repr(a["killed"]) == "Access(outcome='killed', hpa=—, faults=1, info=—)"
    assert repr(a["dead"]) == "Access(outcome='dead', hpa=—, faults=0, info=—)"
    assert repr(a["ok"]).endswith("faults=1, info=—)")
    for text in _access_reprs(pae):
        assert "-1" not in text and "info=0x0)" not in text and number_problems(text, pae) == [], text


@LAYOUTS
def test_public_reprs_keep_the_rule(pae):
    problems = [p for text in _public_reprs(pae) for p in number_problems(text, pae)]
    assert problems == []


def _cli(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "lguest_book", *argv], capture_output=True, text=True, check=True).stdout


@LAYOUTS
def test_cli_output_keeps_the_rule(pae, capsys):
    flag = ["--pae"] if pae else []
    texts = []
    for argv in (["tour", *flag], ["trace", "0x08048000", "--write", *flag], ["trace", "0xc0001000", *flag],
                 ["flaws", *flag], ["where", "demand_page", "--brief"]):
        assert cli.main(argv) == 0
        texts.append(capsys.readouterr().out)
    problems = [p for text in texts for p in number_problems(text, pae)]
    assert problems == []


@pytest.mark.parametrize("kind", practice.KINDS)
def test_practice_problems_keep_the_rule(kind, capsys):
    for seed in range(6):
        assert cli.main(["practice", kind, "--seed", str(seed), "--answer"]) == 0
        text = capsys.readouterr().out
        pae = "PAE Guest" in text and "non-PAE" not in text
        assert number_problems(text, pae) == [], (seed, text)


def test_the_where_header_keeps_the_rule():
    text = _cli("where", "guest_set_pgd")
    assert number_problems(text.splitlines()[0], False) == []


def test_values_stay_ints():
    g, _ = _faulted_guest(True)
    g.touch(0x08048000, write=True, user=True)
    step = li.walk_shadow(g, 0x08048000)[-1]
    frame, index = step.where
    assert (frame, index) == step.where and index == 0x48 and isinstance(step.value, int)
    assert step.value & 0xFFF == 0x067 and type(step.value & 0xFFF) is int  # arithmetic gives plain ints
    assert f"{step.value:#x}" == hex(step.value) and str(step.value) == f"0x{int(step.value):016x}"
    assert f"{step.value:>20}" == "  " + str(step.value) and f"{step.value:d}" == str(int(step.value))
    import json

    assert json.loads(json.dumps(li.limits(g)))["switcher_addr"] == g.host.switcher_addr
    assert repr(g.x86.split(0xC0123456)) == "{'pgd': 0x003, 'pmd': 0x000, 'pte': 0x123, 'offset': 0x456}"
