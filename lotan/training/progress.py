"""The driver's progress display: one bar that redraws in place on a terminal, one line per
epoch elsewhere (logs, CI, ``spark-submit`` output), with the epoch, loss, accuracies, epoch
seconds and the time left."""

from __future__ import annotations

import math
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from lotan.training.records import EpochRecord

__all__ = ["Progress", "announce"]

BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def announce(text: str, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
    """One line before the epochs (which engine runs, and why)."""
    if enabled:
        out = stream or sys.stdout
        out.write(f"lotan: {text}\n")
        out.flush()


class Progress:
    """Shows training progress for ``epochs`` epochs on ``stream`` (stdout by default)."""

    def __init__(self, epochs: int, *, enabled: bool = True, stream: IO[str] | None = None):
        self.epochs = epochs
        self.enabled = enabled
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.inline = bool(isatty and isatty())
        self.seconds: list[float] = []
        self._drawn = False

    def update(self, recs: list[EpochRecord]) -> None:
        """Show the records of one epoch (one per model still training)."""
        if not self.enabled or not recs:
            return
        rec = recs[0]
        self.seconds.append(rec.seconds)
        recent = self.seconds[-10:]
        eta = (self.epochs - rec.epoch) * sum(recent) / len(recent)
        if len(recs) == 1:
            what = (
                f"loss {rec.loss:.4f}  train {rec.train_acc:.4f}  val {rec.val_acc:.4f}  "
                f"test {rec.test_acc:.4f}"
            )
        else:
            best = max(recs, key=lambda r: (not math.isnan(r.val_acc), r.val_acc))
            losses = [r.loss for r in recs]
            what = (
                f"{len(recs)} models  loss {min(losses):.4f}..{max(losses):.4f}  "
                f"best val {best.val_acc:.4f}"
            )
        head = f"epoch {rec.epoch:4d}/{self.epochs}"
        tail = f"{what}  {rec.seconds:.2f}s/epoch  eta {_duration(eta)}"
        if self.inline:
            done = round(BAR_WIDTH * rec.epoch / max(self.epochs, 1))
            bar = "█" * done + "·" * (BAR_WIDTH - done)
            self.stream.write(f"\r{head} {bar} {tail}\033[K")
            self._drawn = True
        else:
            self.stream.write(f"{head}  {tail}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (a terminal keeps the last state on screen)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
