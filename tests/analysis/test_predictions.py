"""engine.analysis.predictions: per-pair rewards round-trip in set order, compactly, newest step by default."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import predictions as P


def test_write_read_round_trip_newest_step_and_size(tmp_path):
    rng = np.random.default_rng(0)
    r_pos, r_neg = rng.normal(size=1000), rng.normal(size=1000)
    P.write(tmp_path, "heldout", 10, r_pos, r_neg)
    path = P.write(tmp_path, "heldout", 20, r_pos + 1, r_neg)
    P.write(tmp_path, "ood", 20, r_pos[:5], r_neg[:5], index=[4, 3, 2, 1, 0])
    assert P.sets(tmp_path) == ["heldout", "ood"] and P.steps(tmp_path, "heldout") == [10, 20]
    newest = P.read(tmp_path, "heldout")
    assert newest.step == 20 and np.allclose(newest.r_pos, (r_pos + 1).astype(np.float32))
    assert (newest.index == np.arange(1000)).all()
    assert (P.read(tmp_path, "heldout", step=10).correct == (r_pos.astype(np.float32) > r_neg.astype(np.float32))).all()
    assert list(P.read(tmp_path, "ood").index) == [4, 3, 2, 1, 0]
    assert path.stat().st_size / 1000 <= 16  # 12 bytes a pair and a header
    assert P.read(tmp_path, "heldout", step=15) is None and P.read(tmp_path, "nope") is None
    assert not list((tmp_path / "predictions" / "heldout").glob(".*"))  # no temp file left behind


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError):
        P.write(tmp_path, "heldout", 1, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        P.write(tmp_path, "", 1, [1.0], [0.0])


def test_any_set_name_stays_one_folder_inside_predictions(tmp_path):
    """A set may be called `../x` or `..` in the config; its folder is still a plain child of predictions/."""
    for name in ("../x", "..", ".hidden", "a/b", "ood"):
        path = P.write(tmp_path, name, 3, [1.0, 0.0], [0.0, 1.0])
        assert path.parent.parent == tmp_path / "predictions", (name, path)
        assert P.read(tmp_path, name).correct.tolist() == [True, False]
    assert P.sets(tmp_path) == sorted(["../x", "..", ".hidden", "a/b", "ood"])
    assert {p.parent for p in tmp_path.rglob("*.npy")} == {d for d in (tmp_path / "predictions").iterdir()}
    (tmp_path / "predictions" / "odd").mkdir(parents=True)
    np.save(tmp_path / "predictions" / "odd" / "step-1.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a predictions file"):
        P.read(tmp_path, "odd")
