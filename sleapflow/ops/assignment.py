"""Minimum-cost assignment of a small matrix without importing ``scipy.optimize`` (0.6 s).

PAF grouping solves one tiny assignment per edge and frame (a few peaks each side). Importing
``scipy.optimize`` for them cost a bottom-up run 0.6 s of CPU, on its first frame with two
animals: a third of its time to first pose. This is the shortest augmenting path method
(Jonker-Volgenant as Crouse, 2016, describes it, the method SciPy implements), with the same
scan order and tie rules, so every solution, ties included, is SciPy's. It costs 15-90 us a
matrix more than SciPy's C++ (up to 12 x 12), so it takes the first :data:`LOOP_BUDGET`
matrices of a process only (short runs never import SciPy's optimizer; a long one repays the
import); larger matrices, and every one once SciPy is loaded anyway (tracking, evaluation), go
to SciPy itself.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from numpy.typing import NDArray

__all__ = ("LOOP_BUDGET", "SMALL_ASSIGNMENT", "linear_sum_assignment", "small_assignment")

#: Largest side solved here; a Python loop costs ~n^3 steps, SciPy's C++ one a call's overhead.
SMALL_ASSIGNMENT = 12
#: Matrices solved here per process before SciPy takes over: at most ~0.45 s of extra loop
#: time, below the 0.6 s its import costs (break-even is about twice as many).
LOOP_BUDGET = 5000
_solved = 0


def linear_sum_assignment(cost: NDArray[np.floating]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """SciPy's ``linear_sum_assignment(cost)`` (rows, columns; minimise), solved here while the
    matrix is small, the budget lasts and SciPy's optimizer is not loaded yet, else by SciPy."""
    global _solved
    matrix = np.asarray(cost)
    if (matrix.ndim != 2 or max(matrix.shape) > SMALL_ASSIGNMENT or _solved >= LOOP_BUDGET
            or "scipy.optimize" in sys.modules):
        from scipy.optimize import linear_sum_assignment as solve

        return solve(matrix)
    _solved += 1  # a count across threads may miss one: it only steers the hand-over
    return small_assignment(matrix)


def small_assignment(cost: NDArray[np.floating]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Rows and columns of a minimum-cost assignment of every row (columns, if fewer) of the
    2-D ``cost``: equal to SciPy's, and ValueError where SciPy raises one (NaN or -inf
    entries, or no assignment of finite cost; +inf marks a forbidden pair)."""
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a matrix (2-d array), got a {matrix.ndim}-d array")
    if (np.isnan(matrix) | np.isneginf(matrix)).any():
        raise ValueError("matrix contains invalid numeric entries")
    transposed = matrix.shape[0] > matrix.shape[1]
    if transposed:
        matrix = matrix.T
    n_rows, n_cols = matrix.shape
    if n_rows == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    costs = matrix.tolist()
    u = [0.0] * n_rows  # row potentials
    v = [0.0] * n_cols  # column potentials
    col_of_row = [-1] * n_rows
    row_of_col = [-1] * n_cols
    for start in range(n_rows):
        sink, min_val, shortest, path, rows_seen, cols_seen = _shortest_path(
            costs, u, v, row_of_col, start)
        if sink < 0:
            raise ValueError("cost matrix is infeasible")
        u[start] += min_val
        for i in rows_seen:
            if i != start:
                u[i] += min_val - shortest[col_of_row[i]]
        for j in cols_seen:
            v[j] -= min_val - shortest[j]
        j = sink
        while True:  # flip the alternating path back to the start row
            i = path[j]
            row_of_col[j] = i
            col_of_row[i], j = j, col_of_row[i]
            if i == start:
                break
    cols = np.asarray(col_of_row, dtype=np.intp)
    if transposed:
        order = np.argsort(cols)
        return cols[order], order.astype(np.intp)
    return np.arange(n_rows, dtype=np.intp), cols


def _shortest_path(costs: list[list[float]], u: list[float], v: list[float],
                   row_of_col: list[int], start: int
                   ) -> tuple[int, float, list[float], list[int], list[int], list[int]]:
    """Dijkstra over reduced costs from row ``start`` to the nearest free column: (that column
    or -1 if none is reachable at finite cost, the path's length, per-column shortest lengths,
    predecessor rows, rows and columns scanned)."""
    n_cols = len(v)
    shortest = [math.inf] * n_cols
    path = [-1] * n_cols
    # Columns not yet scanned, highest first; a scanned one is replaced by the last.
    remaining = list(range(n_cols - 1, -1, -1))
    rows_seen: list[int] = []
    cols_seen: list[int] = []
    min_val = 0.0
    i = start
    while True:
        rows_seen.append(i)
        row, u_i = costs[i], u[i]
        lowest, pick = math.inf, -1
        for k, j in enumerate(remaining):
            reduced = min_val + row[j] - u_i - v[j]
            if reduced < shortest[j]:
                path[j] = i
                shortest[j] = reduced
            # A tie goes to a free column (the last one met), else stays with the first.
            if shortest[j] < lowest or (shortest[j] == lowest and row_of_col[j] == -1):
                lowest, pick = shortest[j], k
        min_val = lowest
        if min_val == math.inf:
            return -1, min_val, shortest, path, rows_seen, cols_seen
        j = remaining[pick]
        cols_seen.append(j)
        remaining[pick] = remaining[-1]
        remaining.pop()
        if row_of_col[j] == -1:
            return j, min_val, shortest, path, rows_seen, cols_seen
        i = row_of_col[j]
