"""Put one column of many experiments side by side, aligned on their index, without a loop
over rows: each experiment's column is a numpy array; when every index is the same (runs of
one script) the frame is built from the arrays directly, otherwise pandas aligns them."""

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
        return column.to_numpy()
    return column.to_pandas().to_numpy()


def _strictly_increasing(x: Any) -> bool:
    import numpy as np

    if len(x) < 2:
        return True
    try:
        return bool((np.diff(x) > np.zeros((), dtype=np.diff(x[:2]).dtype)).all())
    except (TypeError, ValueError):
        return False


def align(
    columns: Sequence[tuple[str, Any, Any]], index_name: str | None, how: str = "outer"
) -> pd.DataFrame:
    """(label, index column, value column) per experiment -> one DataFrame."""
    import numpy as np
    import pandas as pd

    labels = [label for label, _, _ in columns]
    pairs = []
    for _, idx, val in columns:
        x, y = _numpy(idx), _numpy(val)
        if not _strictly_increasing(x):  # out of order or repeated: keep each value's last row
            s = pd.Series(y, index=x)
            s = s[~s.index.duplicated(keep="last")]
            x, y = s.index.to_numpy(), s.to_numpy()
        pairs.append((x, y))
    if not pairs:
        return pd.DataFrame(index=pd.Index([], name=index_name))
    first = pairs[0][0]
    if all(len(x) == len(first) and np.array_equal(x, first) for x, _ in pairs):
        index = pd.Index(first, name=index_name)
        if len(set(labels)) == len(labels):
            return pd.DataFrame(
                dict(zip(labels, (y for _, y in pairs), strict=True)), index=index, copy=False
            )
        return pd.DataFrame(np.column_stack([y for _, y in pairs]), index=index, columns=labels)
    series = [pd.Series(y, index=pd.Index(x, name=index_name)) for x, y in pairs]
    out = pd.concat(series, axis=1, join="inner" if how == "inner" else "outer", sort=True)
    out.columns = pd.Index(labels)
    out.index.name = index_name
    return out
