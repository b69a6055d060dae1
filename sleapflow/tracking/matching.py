"""Assignment of a frame's instances (rows) to tracks (columns) from a cost matrix.

Both matchers return ``min(n_rows, n_cols)`` pairs and never refuse a pair for being too costly:
sleap-nn has no similarity threshold, so an instance only starts a new track when it is left over.
"""

from __future__ import annotations

import numpy as np

__all__ = ("greedy", "hungarian", "linear_sum_assignment", "match")



def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SciPy's Hungarian solver, imported on first use, so runs without tracking start without
    paying for ``scipy.optimize``."""
    from scipy.optimize import linear_sum_assignment as solve

    return solve(cost)


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment; pairs come back in ascending row order.

    Infinite (unscorable) entries are replaced by ``10 * max|finite| + 1`` (``1e6`` if nothing is
    finite) so the solver never reports an infeasible matrix, as sleap-nn does; the caller reads
    tracking scores from the unfilled matrix.
    """
    if cost.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    invalid = ~np.isfinite(cost)
    if invalid.any():
        cost = cost.copy()
        finite = cost[~invalid]
        cost[invalid] = np.abs(finite).max() * 10 + 1 if finite.size else 1e6
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def greedy(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeatedly take the cheapest remaining edge; pairs come back in the order taken.

    Edges are ranked with numpy's default ``argsort`` of the flattened matrix, as sleap-nn does, so
    ties break the same way on the same numpy build.
    """
    n_rows, n_cols = cost.shape
    rows_out: list[int] = []
    cols_out: list[int] = []
    if n_rows and n_cols:
        order = np.argsort(cost, axis=None)
        used_rows = np.zeros(n_rows, dtype=bool)
        used_cols = np.zeros(n_cols, dtype=bool)
        target = min(n_rows, n_cols)
        for flat in order.tolist():
            r, c = divmod(flat, n_cols)
            if used_rows[r] or used_cols[c]:
                continue
            used_rows[r] = used_cols[c] = True
            rows_out.append(r)
            cols_out.append(c)
            if len(rows_out) == target:
                break
    return np.asarray(rows_out, dtype=np.int64), np.asarray(cols_out, dtype=np.int64)


def match(method: str, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to ``hungarian`` or ``greedy`` (a validated name)."""
    if method == "hungarian":
        return hungarian(cost)
    if method == "greedy":
        return greedy(cost)
    raise ValueError(f"unknown matching method {method!r}")
