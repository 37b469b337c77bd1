"""Progress bars for long work (tqdm), quiet when disabled or not on a terminal in tests."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A step counter with a tqdm bar on stderr; ``update(n, **stats)`` shows the latest stats."""

    def __init__(self, total: int, desc: str, enabled: bool = True, every: int = 10, initial: int = 0):
        self.enabled = enabled
        self.every = max(1, every)
        self._count = initial
        self._bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                         initial=initial) if enabled else None

    def update(self, n: int = 1, **stats: float) -> None:
        self._count += n
        if self._bar is None:
            return
        self._bar.update(n)
        if stats and self._count % self.every == 0:
            self._bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in stats.items()}, refresh=False)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
