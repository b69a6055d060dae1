"""The small-matrix assignment solver: SciPy's solutions, ties and errors included, and the
hand-over to SciPy for large matrices, past the budget, or once SciPy is loaded."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_solve

from sleapflow.ops import assignment
from sleapflow.ops.assignment import small_assignment


def _random_cost(rng: np.random.Generator, kind: int) -> np.ndarray:
    rows, cols = (int(n) for n in rng.integers(0, 9, 2))
    if kind == 0:  # few distinct values: ties everywhere
        return rng.integers(0, 3, (rows, cols)).astype(np.float64)
    if kind == 1:
        return rng.random((rows, cols))
    if kind == 2:  # forbidden pairs, often leaving no complete assignment
        cost = rng.integers(-2, 3, (rows, cols)).astype(np.float64)
        cost[rng.random((rows, cols)) < 0.3] = np.inf
        return cost
    # PAF matching's form: negated scores, rounded so that they tie, some invalid
    cost = -np.round(rng.random((rows, cols)), 1).astype(np.float32)
    cost[rng.random((rows, cols)) < 0.1] = np.inf
    if cost.size and rng.random() < 0.1:
        cost.flat[int(rng.integers(cost.size))] = rng.choice([np.nan, -np.inf])
    return cost


def _solve(solver: object, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    try:
        return solver(cost)  # type: ignore[operator]
    except ValueError as error:
        return f"ValueError: {error}"


def test_small_assignments_are_scipys_ties_and_errors_included() -> None:
    rng = np.random.default_rng(20261206)
    errors = 0
    for trial in range(6000):
        cost = _random_cost(rng, trial % 4)
        want, got = _solve(scipy_solve, cost), _solve(small_assignment, cost)
        if isinstance(want, str):
            assert got == want, cost
            errors += 1
            continue
        assert not isinstance(got, str), (cost, got)
        for w, g in zip(want, got, strict=True):
            assert g.dtype == w.dtype and g.tolist() == w.tolist(), (cost, want, got)
    assert 50 < errors < 1000  # both kinds of error were met, and most problems solved


def test_a_constant_matrix_gives_the_identity_and_shapes_follow_scipy() -> None:
    rows, cols = small_assignment(np.ones((4, 4)))
    assert rows.tolist() == cols.tolist() == [0, 1, 2, 3]
    for shape in [(0, 3), (3, 0), (0, 0), (1, 5), (5, 1)]:
        cost = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        for w, g in zip(scipy_solve(cost), small_assignment(cost), strict=True):
            assert g.dtype == w.dtype and g.tolist() == w.tolist()
    with pytest.raises(ValueError, match="2-d"):
        small_assignment(np.ones(3))


def test_scipy_takes_large_matrices_the_rest_after_the_budget_and_all_once_loaded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def counting(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(cost.shape)
        return small_assignment(cost)

    monkeypatch.setattr(assignment, "small_assignment", counting)
    monkeypatch.setattr(assignment, "_solved", 0)
    monkeypatch.setattr(assignment, "LOOP_BUDGET", 2)
    small, large = 1 - np.eye(3), 1 - np.eye(assignment.SMALL_ASSIGNMENT + 1)  # identity is best
    # This process has SciPy's optimizer loaded already (other tests): then SciPy solves all.
    assert "scipy.optimize" in sys.modules
    assignment.linear_sum_assignment(small)
    assert calls == []
    monkeypatch.delitem(sys.modules, "scipy.optimize")
    for cost in (small, large, small, small):
        rows, cols = assignment.linear_sum_assignment(cost)
        assert rows.tolist() == cols.tolist() == list(range(cost.shape[0]))
        # A large matrix (or one past the budget) imports SciPy's optimizer to solve it.
        monkeypatch.delitem(sys.modules, "scipy.optimize", raising=False)
    assert calls == [(3, 3), (3, 3)]  # the large one went to SciPy, so did the third small one
