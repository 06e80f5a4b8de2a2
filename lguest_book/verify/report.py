"""What a referee says: how much it compared, and every divergence it found."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    name: str
    layout: str
    sequences: int
    operations: int
    divergences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def __str__(self) -> str:
        head = (f"{self.name} ({self.layout}): {self.sequences} sequences, {self.operations} operations "
                f"compared, {len(self.divergences)} divergence{'s' if len(self.divergences) != 1 else ''}")
        return "\n".join([head] + [f"  ✗ {d}" for d in self.divergences[:10]])
