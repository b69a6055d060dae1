"""The tracker's per-frame OKS is evaluation's OKS, bit for bit."""

from __future__ import annotations

import numpy as np

from sleapflow.ops.oks import compute_oks, frame_oks


def test_frame_oks_equals_compute_oks() -> None:
    rng = np.random.default_rng(3)
    for n, m in ((1, 1), (3, 5), (4, 2)):
        a = rng.normal(size=(n, 6, 2)) * 30
        b = rng.normal(size=(m, 6, 2)) * 30
        a[0, 2] = np.nan
        b[-1, 0] = np.nan
        if n > 2:
            a[1] = np.nan  # no visible node: NaN row in both
        np.testing.assert_array_equal(frame_oks(a, b, 0.05), compute_oks(a, b, stddev=0.05))
    assert frame_oks(np.zeros((0, 6, 2)), b).shape == (0, m)
