"""Put one column of many experiments side by side, aligned on their index, without a loop
over rows: each experiment's column is a numpy array; when every index is the same (runs of
one script) the values are copied once into one 2-D block that becomes the frame, otherwise
pandas aligns them.

`Melder` takes the columns one at a time, so a caller parsing files in parallel fills the block
while the rest are still being parsed. Columns parsed as one chunk come as read-only views of
Arrow's buffers (no copy). Indexes stay views (an index is immutable); values are copied,
once, so the frame can be edited in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _numpy(column: Any) -> Any:
    """A pyarrow column as numpy; missing values become NaN (NaT for times)."""
    import pyarrow as pa

    if pa.types.is_null(column.type):
        import numpy as np

        return np.full(len(column), np.nan)
    if column.null_count == 0:
        return column.to_numpy()  # zero-copy (read-only) for one chunk of numbers
    return column.to_pandas().to_numpy()


def _writable(y: Any) -> Any:
    import numpy as np

    return y if y.flags.writeable else np.array(y)


def _strictly_increasing(x: Any) -> bool:
    import numpy as np

    if len(x) < 2:
        return True
    try:
        return bool((np.diff(x) > np.zeros((), dtype=np.diff(x[:2]).dtype)).all())
    except (TypeError, ValueError):
        return False


class Melder:
    """Collects (label, index column, value column) per experiment, in order; `frame()` is
    the DataFrame. `expected` is how many columns will come (the block is sized for them)."""

    def __init__(self, expected: int, index_name: str | None, how: str = "outer") -> None:
        self.expected = expected
        self.index_name = index_name
        self.how = how
        self.labels: list[str] = []
        self.pairs: list[tuple[Any, Any]] = []
        self._block: Any = None  # rows x expected, Fortran order; None once off the fast path
        self._fast = True

    def add(self, label: str, index: Any, values: Any) -> None:
        import numpy as np
        import pandas as pd

        x, y = _numpy(index), _numpy(values)
        if not _strictly_increasing(x):  # out of order or repeated: keep each value's last row
            s = pd.Series(_writable(y), index=x)
            s = s[~s.index.duplicated(keep="last")]
            x, y = s.index.to_numpy(), s.to_numpy()
        i = len(self.pairs)
        self.labels.append(label)
        self.pairs.append((x, y))
        if not self._fast:
            return
        first_x, first_y = self.pairs[0]
        if i == 0:
            if y.dtype.kind in "biuf":
                self._block = np.empty((len(x), self.expected), dtype=y.dtype, order="F")
            else:
                self._fast = False
        elif y.dtype != first_y.dtype or len(x) != len(first_x) or not np.array_equal(x, first_x):
            self._fast = False
        if self._fast and i < self.expected:
            self._block[:, i] = y
        else:
            self._block = None

    def frame(self) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        labels, pairs = self.labels, self.pairs
        if not pairs:
            return pd.DataFrame(index=pd.Index([], name=self.index_name))
        first = pairs[0][0]
        columns = pd.Index(labels)
        if self._fast and self._block is not None and len(pairs) == self.expected:
            index = pd.Index(first, name=self.index_name)
            return pd.DataFrame(self._block, index=index, columns=columns, copy=False)
        if all(len(x) == len(first) and np.array_equal(x, first) for x, _ in pairs):
            index = pd.Index(first, name=self.index_name)
            data = dict(enumerate(_writable(y) for _, y in pairs))  # each keeps its dtype
            return pd.DataFrame(data, index=index, copy=False).set_axis(columns, axis=1)
        series = [
            pd.Series(_writable(y), index=pd.Index(x, name=self.index_name)) for x, y in pairs
        ]
        join = "inner" if self.how == "inner" else "outer"
        out = pd.concat(series, axis=1, join=join, sort=True)
        out.columns = columns
        out.index.name = self.index_name
        return out


def align(
    columns: Sequence[tuple[str, Any, Any]], index_name: str | None, how: str = "outer"
) -> pd.DataFrame:
    """(label, index column, value column) per experiment -> one DataFrame."""
    melder = Melder(len(columns), index_name, how)
    for label, index, values in columns:
        melder.add(label, index, values)
    return melder.frame()
