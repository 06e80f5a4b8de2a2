"""Widgets to poke the tables: a fault stepper, a table explorer and a hypercall console.

Each widget is a plain Python object first — methods that act (``step()``, ``select()``,
``set_pte()``...) and attributes that tell its state — and an ipywidgets view second
(``.view``), so tests drive it without a browser and a notebook shows it by making it the
last expression of a cell.  The plain-text form of every widget (what nbval compares) is a
short, deterministic summary.

Like :mod:`lguest_book.plots`, this module reads the model only through
:mod:`lguest_book.inspect` (and :mod:`lguest_book.trace`); it acts only through the Guest's
public methods.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

from . import inspect as li
from . import plots
from .trace import Tracer


_DPI = 80
_FIG_SIZE = (6.4, 4.2)  # inches: 512 x 336 pixels at _DPI


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)  # small: the widget redraws on every step
    return buf.getvalue()


class _Shown:
    """Mixin: display ``.view`` with a short, deterministic text form."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.view._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle = dict(bundle)
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return self.summary()


# =============================================================================================
# The fault stepper
# =============================================================================================
class _StopHere(BaseException):
    """Raised from the trace function to freeze the model mid-fault (never escapes)."""


@dataclass(frozen=True)
class FaultStep:
    """One step of a fault's handling."""

    index: int
    kind: str  # "access" | "enter" | "fault" | "call" | "check" | "read" | "write" | "alloc" | "kill" | "result"
    func: str
    text: str
    lineno: int  # the line of page_tables.py running (0 if none)
    events: int  # how many trace events had happened when this step was complete

    @property
    def source_line(self) -> str:
        return li.source_line(self.lineno)


_C_CALLS = frozenset(("demand_page", "find_spte", "gpte_to_spte", "get_pfn", "check_gpte", "check_gpgd",
                      "check_gpmd", "gpte_in_iomem", "release_pte"))


class _CountingTracer(Tracer):
    """A tracer that freezes the run (raises :class:`_StopHere`) after ``limit`` events."""

    def __init__(self, limit: int | None):
        super().__init__(lines=True)
        self.limit = limit
        trace = self.trace
        append = trace.append

        def counted(event):
            append(event)
            if self.limit is not None and len(trace) >= self.limit:
                raise _StopHere

        trace.append = counted  # type: ignore[method-assign]


class FaultStepper(_Shown):
    """Step through one page fault's handling, decision by decision.

    The Guest accesses ``vaddr`` (a write if ``write``, from user mode if ``user``) with
    ``Guest.touch()``; each page fault the access raises makes the Host call
    ``demand_page()`` (an access the shadow already maps raises none).
    ``steps`` lists what happens; ``step()``/``back()``/``run_to_end()``/``go(k)`` move the
    position; ``state_at(k)`` is a copy of the Guest as it stands after step ``k`` (the model
    frozen mid-fault), and ``figure()`` draws the shadow and Guest walks of ``vaddr`` then.
    The Guest passed in is never changed.
    """

    def __init__(self, guest, vaddr: int, *, write: bool = False, user: bool = False):
        self._guest = guest
        self._view = None
        self.reset(vaddr, write, user)

    # --- recording ------------------------------------------------------------------------
    def reset(self, vaddr: int | None = None, write: bool | None = None, user: bool | None = None) -> None:
        """Start again, optionally with another address or access."""
        if vaddr is not None:
            if not isinstance(vaddr, int) or not 0 <= vaddr <= 0xFFFFFFFF:
                raise ValueError(f"vaddr={vaddr!r} is not a 32-bit address")
            self.vaddr = vaddr
        if write is not None:
            self.write = bool(write)
        if user is not None:
            self.user = bool(user)
        # the error code of a not-present fault for this access (a protection fault adds 1)
        self.errcode = (2 if self.write else 0) | (4 if self.user else 0)
        self._base = copy.deepcopy(self._guest)
        self._pngs: dict[int, bytes] = {}  # picture of the walks, by the last table-changing step
        self._canvas = None  # the figure the widget redraws into
        self.steps = self._record()
        self.position = 0
        self._refresh()

    def _run(self, guest, limit: int | None):
        tracer = _CountingTracer(limit)
        result = None
        try:
            with tracer:
                result = guest.touch(self.vaddr, write=self.write, user=self.user)
        except _StopHere:
            pass
        return tracer.trace, result

    def _record(self) -> list[FaultStep]:
        guest = copy.deepcopy(self._base)
        trace, result = self._run(guest, None)
        L = li.layout(guest)
        mode = "from user mode" if self.user else "from the kernel"
        steps = [FaultStep(0, "access", "", f"The Guest makes a {'write' if self.write else 'read'} of "
                           f"{self.vaddr:#x} {mode}.", 0, 0)]
        faults = 0
        switcher = None  # while map_switcher_in_guest runs: [depth, shadow entries it stored]
        stack: list[list] = []  # [function, line it is running] for each active traced call
        pending: list = []  # calls whose step is complete only when they return
        for n, e in enumerate(trace, start=1):
            kind = text = None
            line = stack[-1][1] if stack else 0
            # Entering the Guest maps the Switcher first: one step, not its every detail.
            if switcher is None and e.kind == "call" and e.func == "map_switcher_in_guest":
                switcher = [e.depth, 0]
                continue
            if switcher is not None:
                if e.kind == "call" and e.func == "store":
                    switcher[1] += 1
                if e.kind in ("return", "raise") and e.func == "map_switcher_in_guest" and e.depth == switcher[0]:
                    what = (f"{switcher[1]} shadow entries stored" if e.kind == "return"
                            else f"it failed: {e.value}")
                    steps.append(FaultStep(len(steps), "enter", e.func, "Before the Guest runs, the Host maps the "
                                           f"Switcher's pages into this top level (map_switcher_in_guest: "
                                           f"{what}).", 0, n))
                    switcher = None
                continue
            if e.kind == "line":
                if stack:
                    stack[-1][1] = e.lineno
                continue
            if e.kind == "call":
                stack.append([e.func, 0])
                if e.func == "demand_page":
                    faults += 1
                    code = e.args.get("errcode", self.errcode)
                    kind, text = "fault", (f"The CPU faults{'' if faults == 1 else f' again (fault {faults})'}: "
                                           f"error code {code} at {self.vaddr:#x}. The Host calls demand_page().")
                elif e.func in _C_CALLS:
                    shown = ", ".join(f"{k}={v:#x}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
                                      for k, v in e.args.items() if k not in ("cpu", "lg", "host", "mm"))
                    kind, text = "call", f"{e.func}({shown})"
                elif e.func == "lgread":
                    pending.append((e, line, "read", None))
                elif e.func == "store":
                    frame, index = e.args["ptr"]
                    pending.append((e, line, "write", f"wrote shadow entry {index} of frame {frame:#x}: "
                                    f"{(e.old or 0):#x} → {e.args['value']:#x} ({L.describe(e.args['value'])})"))
                elif e.func == "lgwrite":
                    pending.append((e, line, "write", f"wrote back the Guest's PTE at {e.args['addr']:#x}: "
                                    f"{(e.old or 0):#x} → {e.args['value']:#x} ({L.describe(e.args['value'])})"))
                elif e.func == "get_zeroed_page":
                    pending.append((e, line, "alloc", None))
                elif e.func == "kill_guest":
                    pending.append((e, line, "kill", f"kill_guest: {e.args['reason']!r}"))
            elif e.kind in ("return", "raise"):
                if stack:
                    stack.pop()
                if pending and pending[-1][0].func == e.func:
                    call, line, kind, text = pending.pop()
                    if kind == "read":
                        text = (f"read the Guest's {call.args['type_name']} at {call.args['addr']:#x}: "
                                f"{e.value:#x} ({L.describe(e.value)})")
                    elif kind == "alloc":
                        text = f"allocated a zeroed host page: frame {e.value:#x}" if e.value else "the page allocation FAILED"
            elif e.kind == "decision":
                kind, text, line = "check", f"{e.func}: {e.label}? {'yes' if e.outcome else 'no'}", e.lineno
            if kind is not None:
                steps.append(FaultStep(len(steps), kind, e.func, text, line, n))
        outcome = {"ok": "fixed" if result.faults else "no-fault", "guest-fault": "guest"}.get(
            result.outcome, result.outcome)
        final = {
            "fixed": f"demand_page() fixed the fault: the Guest retries the access and it succeeds "
                     f"(host physical address {result.hpa:#x}).",
            "no-fault": f"No fault: the shadow tables already map it (host physical address {result.hpa:#x}).",
            "guest": "demand_page() refused: the fault is the Guest's own, and goes back to it.",
            "mmio": f"device memory: the Launcher emulates the access at {result.info:#x}.",
            "killed": f"the Guest is dead: {li.limits(guest)['dead']!r}",
            "dead": "the Guest was already dead: nothing runs.",
            "livelock": "the access faulted again and again: the shadow never settles (livelock).",
        }[outcome]
        steps.append(FaultStep(len(steps), "result", "", final, 0, len(trace)))
        self.outcome = outcome
        return steps

    # --- moving -----------------------------------------------------------------------------
    @property
    def current(self) -> FaultStep:
        return self.steps[self.position]

    def go(self, k: int) -> FaultStep:
        if not isinstance(k, int) or not 0 <= k < len(self.steps):
            raise ValueError(f"k={k!r}: steps are numbered 0..{len(self.steps) - 1}")
        self.position = k
        self._refresh()
        return self.current

    def step(self) -> FaultStep:
        return self.go(min(self.position + 1, len(self.steps) - 1))

    def back(self) -> FaultStep:
        return self.go(max(self.position - 1, 0))

    def run_to_end(self) -> FaultStep:
        return self.go(len(self.steps) - 1)

    @property
    def at_end(self) -> bool:
        return self.position == len(self.steps) - 1

    # --- state ---------------------------------------------------------------------------------
    def state_at(self, k: int | None = None):
        """A copy of the Guest as it stands once step ``k`` (default: the current one) is done."""
        k = self.position if k is None else k
        if not isinstance(k, int) or not 0 <= k < len(self.steps):
            raise ValueError(f"k={k!r}: steps are numbered 0..{len(self.steps) - 1}")
        guest = copy.deepcopy(self._base)
        if k == 0:
            return guest
        if k == len(self.steps) - 1:
            self._run(guest, None)
        else:
            self._run(guest, self.steps[k].events)
        return guest

    def changed_at(self, k: int | None = None) -> int:
        """The last step at or before ``k`` that wrote a table entry (0 if none): the walks
        drawn after step ``k`` are those after that step."""
        k = self.position if k is None else k
        return max((st.index for st in self.steps[: k + 1] if st.kind in ("enter", "write")), default=0)

    def png(self, k: int | None = None) -> bytes:
        """:meth:`figure` as PNG bytes (what the widget shows), drawn once per table state.
        The widget keeps one figure and redraws into it: making new Axes costs more than
        drawing the walks."""
        key = self.changed_at(k)
        if key not in self._pngs:
            if self._canvas is None:
                self._canvas = self._new_canvas()
            fig, top, bottom = self._canvas
            for ax in (top, bottom):
                for artist in (*ax.patches, *ax.texts):
                    artist.remove()
            self._pngs[key] = _png(self._draw(self.state_at(key), fig, top, bottom))
        return self._pngs[key]

    @staticmethod
    def _new_canvas():
        fig = plots.new_figure(_FIG_SIZE, layout=None)  # fixed margins: a third faster than constrained
        fig.subplots_adjust(left=0.01, right=0.99, top=0.94, bottom=0.01, hspace=0.22)
        top, bottom = fig.subplots(2, 1)
        return fig, top, bottom

    def figure(self, k: int | None = None):
        """The shadow walk and the Guest's walk of ``vaddr`` after step ``k`` (a new Figure)."""
        return self._draw(self.state_at(k), *self._new_canvas())

    def _draw(self, guest, fig, top, bottom):
        plots.plot_walk(guest, self.vaddr, "shadow", ax=top)
        if not li.limits(guest)["linear_pages"]:
            plots.plot_walk(guest, self.vaddr, "guest", ax=bottom)
        else:
            bottom.axis("off")
            bottom.set(xlim=(0, 1), ylim=(0, 1), title="")  # as a fresh Axes, even when redrawn
            bottom.text(0, 0.5, "linear mode: the Guest has no page tables yet", fontsize=9)
        return fig

    def summary(self) -> str:
        access = ("write" if self.write else "read") + (", user" if self.user else ", kernel")
        return (f"FaultStepper({self.vaddr:#x}, {access}): step {self.position} of "
                f"{len(self.steps) - 1} — {self.current.text}")

    # --- the view ---------------------------------------------------------------------------------
    @property
    def view(self):
        if self._view is None:
            self._build_view()
            self._refresh()
        return self._view

    def _build_view(self) -> None:
        import ipywidgets as W

        self._w_addr = W.Text(value=f"{self.vaddr:#x}", description="address", layout=W.Layout(width="220px"))
        self._w_write = W.Checkbox(value=self.write, description="write", indent=False, layout=W.Layout(width="70px"))
        self._w_user = W.Checkbox(value=self.user, description="user", indent=False, layout=W.Layout(width="70px"))
        buttons = {name: W.Button(description=name, layout=W.Layout(width="100px"))
                   for name in ("Back", "Step", "Run to end", "Reset")}
        buttons["Back"].on_click(lambda _: self.back())
        buttons["Step"].on_click(lambda _: self.step())
        buttons["Run to end"].on_click(lambda _: self.run_to_end())
        buttons["Reset"].on_click(lambda _: self._reset_from_view())
        self._w_buttons = buttons
        self._w_text = W.HTML()
        self._w_text.add_class("lgb-step-text")
        self._w_source = W.HTML()
        self._w_source.add_class("lgb-source")
        width = int(_FIG_SIZE[0] * _DPI)
        self._w_image = W.Image(format="png", layout=W.Layout(width=f"{width}px", max_width="100%"))
        self._w_image.add_class("lgb-plot")
        self._w_error = W.HTML()
        self._view = W.VBox([
            W.HBox([self._w_addr, self._w_write, self._w_user, buttons["Reset"]]),
            W.HBox([buttons["Back"], buttons["Step"], buttons["Run to end"]]),
            self._w_text, self._w_source, self._w_error, self._w_image,
        ])

    def _reset_from_view(self) -> None:
        try:
            vaddr = int(self._w_addr.value, 0)
            self.reset(vaddr, self._w_write.value, self._w_user.value)
            self._w_error.value = ""
        except ValueError as err:
            self._w_error.value = f"<span style='color:#D55E00'>{err}</span>"

    def _refresh(self) -> None:
        if self._view is None:
            return
        import html

        cur = self.current
        self._w_text.value = (f"<b>step {cur.index} of {len(self.steps) - 1}</b> [{cur.kind}] "
                              f"{html.escape(cur.text)}")
        src = cur.source_line
        self._w_source.value = (f"<pre style='margin:0'>page_tables.py:{cur.lineno}  {html.escape(src.strip())}</pre>"
                                if src else "<pre style='margin:0'> </pre>")
        self._w_image.value = self.png()
        self._w_buttons["Back"].disabled = self.position == 0
        self._w_buttons["Step"].disabled = self.at_end
        self._w_buttons["Run to end"].disabled = self.at_end


# =============================================================================================
# The table explorer
# =============================================================================================
class TableExplorer(_Shown):
    """Browse the Guest's tables and the shadow tables of any cached top level.

    ``select(which=, slot=, level=, vaddr=, index=)`` picks one entry and returns it decoded
    (an :class:`~lguest_book.inspect.Entry`); ``entries`` lists the present entries of the
    selected table; ``detail`` is the decoded text of the selected entry.
    """

    LEVELS = ("pgd", "pmd", "pte")

    def __init__(self, guest, which: str = "shadow", slot: int | None = None):
        self._guest = guest
        self._view = None
        self.which = "shadow"
        self.slot = li.current_slot(guest)
        self.level = "pgd"
        self.vaddr = 0
        self.index = 0
        self.select(which=which, slot=slot if slot is not None else self.slot)

    def _table(self):
        if not li.pgdir_cache(self._guest)[self.slot]["allocated"]:
            return []  # an empty slot: neither a shadow nor a Guest top level
        if self.which == "shadow":
            return li.shadow_table(self._guest, self.slot, self.level, self.vaddr)
        gpgdir = li.pgdir_cache(self._guest)[self.slot]["gpgdir"]
        return li.guest_table(self._guest, gpgdir, self.level, self.vaddr)

    def select(self, *, which: str | None = None, slot: int | None = None, level: str | None = None,
               vaddr: int | None = None, index: int | None = None):
        """Choose a table (and an entry in it); returns the selected entry, or None if the table
        does not exist (a level above is not present)."""
        L = li.layout(self._guest)
        if which is not None:
            if which not in ("shadow", "guest"):
                raise ValueError(f"which={which!r}: use 'shadow' or 'guest'")
            self.which = which
        if slot is not None:
            if not isinstance(slot, int) or not 0 <= slot < 4:
                raise ValueError(f"slot={slot!r} is not a pgdir slot (0..3)")
            self.slot = slot
        if level is not None:
            if level not in self.LEVELS or (level == "pmd" and not L.pae):
                raise ValueError(f"level={level!r}: this layout has levels {('pgd', 'pmd', 'pte') if L.pae else ('pgd', 'pte')}")
            self.level = level
        if vaddr is not None:
            if not isinstance(vaddr, int) or not 0 <= vaddr <= 0xFFFFFFFF:
                raise ValueError(f"vaddr={vaddr!r} is not a 32-bit address")
            self.vaddr = vaddr
        self.table = self._table()
        if index is not None:
            if not isinstance(index, int) or not 0 <= index < max(len(self.table), 1):
                raise ValueError(f"index={index!r} is outside this table (0..{max(len(self.table), 1) - 1})")
            self.index = index
        elif self.table:  # the entry of this table that covers the chosen address
            self.index = next((e.index for e in self.table if e.vaddr <= self.vaddr < e.vaddr + self._span()), 0)
        self.index = min(self.index, max(len(self.table) - 1, 0))
        self._refresh()
        return self.selected

    def _span(self) -> int:
        L = li.layout(self._guest)
        return {"pgd": L.PGDIR_SIZE, "pmd": L.PMD_SIZE, "pte": 4096}[self.level]

    @property
    def entries(self):
        return [e for e in self.table if e.present]

    @property
    def selected(self):
        return self.table[self.index] if self.table else None

    @property
    def detail(self) -> str:
        e = self.selected
        if e is None:
            if not li.pgdir_cache(self._guest)[self.slot]["allocated"]:
                return f"slot {self.slot} is empty: no top level cached there"
            return f"no {self.level} table here: a level above is not present"
        end = (e.vaddr + self._span() - 1) & 0xFFFFFFFF
        frame_kind = "guest frame" if self.which == "guest" else "host frame"
        owner = ""
        if self.which == "shadow" and e.present:
            kind, num = li.owner(self._guest, e.frame)
            owner = f" — {kind}{'' if num is None else ' ' + hex(num)}"
        return (f"{self.which} {e.level}[{e.index}] covers {e.vaddr:#010x}–{end:#010x}: value {e.value:#x}; "
                f"{frame_kind} {e.frame:#x}{owner}; flags {'|'.join(e.flags) or 'none'}")

    def summary(self) -> str:
        return (f"TableExplorer({self.which}, slot {self.slot}, {self.level} for {self.vaddr:#x}): "
                f"{len(self.entries)} present — {self.detail}")

    @property
    def view(self):
        if self._view is None:
            self._build_view()
            self._refresh()
        return self._view

    def _build_view(self) -> None:
        import ipywidgets as W

        L = li.layout(self._guest)
        self._w_which = W.ToggleButtons(options=["shadow", "guest"], value=self.which)
        self._w_slot = W.Dropdown(options=[(f"slot {i}", i) for i in range(4)], value=self.slot, description="top level")
        levels = ["pgd", "pmd", "pte"] if L.pae else ["pgd", "pte"]
        self._w_level = W.Dropdown(options=levels, value=self.level, description="level")
        self._w_vaddr = W.Text(value=f"{self.vaddr:#x}", description="address")
        self._w_list = W.Select(options=[], rows=10, layout=W.Layout(width="95%"))
        self._w_list.add_class("lgb-entries")
        self._w_detail = W.HTML()
        self._w_detail.add_class("lgb-detail")
        self._w_which.observe(lambda c: self._from_view(which=c["new"]), "value")
        self._w_slot.observe(lambda c: self._from_view(slot=c["new"]), "value")
        self._w_level.observe(lambda c: self._from_view(level=c["new"]), "value")
        self._w_vaddr.observe(lambda c: self._from_view(vaddr_text=c["new"]), "value")
        self._w_list.observe(lambda c: c["new"] is not None and self._from_view(index=c["new"]), "value")
        self._view = W.VBox([W.HBox([self._w_which, self._w_slot]), W.HBox([self._w_level, self._w_vaddr]),
                             self._w_list, self._w_detail])

    def _from_view(self, vaddr_text: str | None = None, **kwargs) -> None:
        if self._busy:
            return
        try:
            if vaddr_text is not None:
                kwargs["vaddr"] = int(vaddr_text, 0)
            self.select(**kwargs)
        except ValueError as err:
            self._w_detail.value = f"<span style='color:#D55E00'>{err}</span>"

    _busy = False

    def _refresh(self) -> None:
        if self._view is None:
            return
        import html

        self._busy = True
        try:
            shown = self.entries[:512]
            self._w_list.options = [(e.text, e.index) for e in shown] or [("(no present entries)", None)]
            self._w_list.value = self.index if any(e.index == self.index for e in shown) else None
            self._w_detail.value = html.escape(self.detail)
        finally:
            self._busy = False


# =============================================================================================
# The hypercall console
# =============================================================================================
class HypercallConsole(_Shown):
    """Be the Guest: make page-table hypercalls and see what the Host did.

    Every action is run under a tracer; ``log`` gets one line per action saying what the Host
    wrote, allocated, released, or why it killed the Guest.  ``last_trace`` is the full trace.
    """

    def __init__(self, guest):
        self._guest = guest
        self._view = None
        self.log: list[str] = []
        self.last_trace = None

    def _do(self, what: str, action) -> str:
        g = self._guest
        if li.limits(g)["dead"] is not None:
            line = f"{what}: the Guest is dead ({li.limits(g)['dead']!r}); nothing happens"
        else:
            with Tracer() as t:
                action()
            self.last_trace = t.trace
            writes = t.trace.writes()
            shadow = sum(1 for w in writes if w[0] == "shadow")
            guest_w = sum(1 for w in writes if w[0] == "guest")
            allocs = sum(1 for f in t.trace.allocations() if f)
            freed = len(t.trace.calls("free_page"))
            unpinned = len(t.trace.calls("put_page")) - freed
            dead = li.limits(g)["dead"]
            line = (f"{what}: {shadow} shadow entries written, {guest_w} Guest entries written, "
                    f"{allocs} pages allocated, {freed} freed, {max(unpinned, 0)} unpinned"
                    + (f"; Guest KILLED: {dead!r}" if dead else ""))
        self.log.append(line)
        self._refresh()
        return line

    def set_pte(self, vaddr: int, pte: int, proc=None) -> str:
        """The Guest writes a PTE and makes the SET_PTE hypercall."""
        return self._do(f"SET_PTE {vaddr:#x} = {pte:#x}", lambda: self._guest.set_pte(vaddr, pte, proc))

    def set_pgd(self, index: int, value: int, proc=None) -> str:
        return self._do(f"SET_PGD [{index}] = {value:#x}", lambda: self._guest.set_pgd(index, value, proc))

    def set_pmd(self, vaddr: int, value: int, proc=None) -> str:
        if not li.layout(self._guest).pae:
            raise ValueError("set_pmd: SET_PMD exists only for a PAE guest")
        return self._do(f"SET_PMD {vaddr:#x} = {value:#x}", lambda: self._guest.set_pmd(vaddr, value, proc))

    def map_kernel(self, vaddr: int, gpfn: int) -> str:
        """Change a kernel mapping (SET_PTE on a kernel address: every cached top level)."""
        if vaddr < li.limits(self._guest)["kernel_address"]:
            raise ValueError(f"vaddr={vaddr:#x} is below kernel_address")
        return self._do(f"kernel map {vaddr:#x} -> page {gpfn:#x}", lambda: self._guest.map(vaddr, gpfn))

    def switch_to(self, proc) -> str:
        """Switch to ``proc``: the NEW_PGTABLE hypercall with its top level."""
        return self._do(f"NEW_PGTABLE {getattr(proc, 'name', '?')}", lambda: self._guest.switch_to(proc))

    def new_pgtable(self, proc=None, name: str | None = None) -> str:
        """The NEW_PGTABLE hypercall: switch to ``proc`` (a new process named ``name`` if None)."""
        if proc is None:
            proc = self.new_process(name)
        return self.switch_to(proc)

    def new_process(self, name: str | None = None):
        proc = self._guest.new_process(name)
        self.log.append(f"the Guest built a new top level for {proc.name} at {proc.gpgdir:#x} (no hypercall)")
        self._refresh()
        return proc

    def flush_user(self) -> str:
        return self._do("FLUSH_TLB(0) — user part", self._guest.flush_user)

    def flush_all(self) -> str:
        return self._do("FLUSH_TLB(1) — everything", self._guest.flush_all)

    def touch(self, vaddr: int, write: bool = False, user: bool = False) -> str:
        box = {}

        def act():
            box["a"] = self._guest.touch(vaddr, write=write, user=user)

        line = self._do(f"touch {vaddr:#x} ({'write' if write else 'read'}, {'user' if user else 'kernel'})", act)
        if "a" in box:
            self.log[-1] = f"{line}; outcome {box['a'].outcome} after {box['a'].faults} fault(s)"
            self._refresh()
        return self.log[-1]

    def summary(self) -> str:
        last = self.log[-1] if self.log else "no hypercalls yet"
        return f"HypercallConsole: {len(self.log)} action(s); last: {last}"

    @property
    def view(self):
        if self._view is None:
            self._build_view()
            self._refresh()
        return self._view

    def _build_view(self) -> None:
        import ipywidgets as W

        pae = li.layout(self._guest).pae
        self._w_vaddr = W.Text(value="0x8048000", description="vaddr/index", layout=W.Layout(width="230px"))
        self._w_value = W.Text(value="0x300067", description="entry", layout=W.Layout(width="230px"))
        names = (["SET_PTE", "SET_PGD"] + (["SET_PMD"] if pae else [])
                 + ["kernel map", "new process", "touch", "FLUSH user", "FLUSH all"])
        self._w_buttons = {n: W.Button(description=n, layout=W.Layout(width="105px")) for n in names}
        for n, b in self._w_buttons.items():
            b.on_click(lambda _b, n=n: self._from_view(n))
        self._w_help = W.HTML("<small>SET_PTE / touch / kernel map: <i>vaddr</i>; SET_PGD: <i>index</i>; "
                              "the entry's frame is the page a kernel map points at.</small>")
        self._w_log = W.HTML()
        self._w_log.add_class("lgb-log")
        buttons = list(self._w_buttons.values())
        self._view = W.VBox([W.HBox([self._w_vaddr, self._w_value]), W.HBox(buttons[:4]), W.HBox(buttons[4:]),
                             self._w_help, self._w_log])

    def _from_view(self, name: str) -> None:
        try:
            a = int(self._w_vaddr.value, 0)
            v = int(self._w_value.value, 0)
            {"SET_PTE": lambda: self.set_pte(a, v), "SET_PGD": lambda: self.set_pgd(a, v),
             "SET_PMD": lambda: self.set_pmd(a, v), "touch": lambda: self.touch(a, write=True, user=True),
             "kernel map": lambda: self.map_kernel(a, v >> 12), "new process": lambda: self.new_pgtable(),
             "FLUSH user": self.flush_user, "FLUSH all": self.flush_all}[name]()
        except (ValueError, TypeError) as err:
            self.log.append(f"{name}: not done — {err}")
            self._refresh()

    def _refresh(self) -> None:
        if self._view is None:
            return
        import html

        self._w_log.value = "<br>".join(html.escape(x) for x in self.log[-12:]) or "<i>no hypercalls yet</i>"
