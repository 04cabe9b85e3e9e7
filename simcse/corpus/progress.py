"""The progress bar of a corpus encode: rows encoded, rows/s and an ETA from the part of the input read."""

from __future__ import annotations

from typing import Any


class RowProgress:
    """A tqdm bar over this process's rows (disabled: does nothing).

    The input's length is often unknown (a text stream), so the total is estimated after each shard
    from the part of the input read so far (bytes of the files, or rows of a dataset of known size),
    divided among the processes; kept shards of a resumed run leave the total instead of counting as
    encoded, so the rate and ETA are those of the encoding itself.
    """

    def __init__(self, source: Any, world: int, enabled: bool) -> None:
        self.source, self.world, self.kept_rows = source, world, 0
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc="encode", unit=" rows", unit_scale=True, dynamic_ncols=True, smoothing=0.05)

    def update(self, n: int) -> None:
        """``n`` more rows encoded."""
        if self.bar is not None:
            self.bar.update(n)

    def kept(self, n: int, seen: int) -> None:
        """A shard of ``n`` rows was kept from an earlier run; ``seen`` rows of the input read so far."""
        self.kept_rows += n
        self.shard_done(seen)

    def shard_done(self, seen: int) -> None:
        """Re-estimate the total once ``seen`` rows of the input have been read."""
        fraction = self.source.fraction_read()
        if self.bar is not None and fraction:
            estimate = int(seen / fraction / self.world) - self.kept_rows
            self.bar.total = max(estimate, self.bar.n)
            self.bar.refresh()

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
