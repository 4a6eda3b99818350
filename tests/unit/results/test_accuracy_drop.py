"""accuracy_drop: the no-attack twin's final accuracy minus the run's."""

from __future__ import annotations

import math

import pandas as pd

from flarena.results.store import add_accuracy_drop


def test_accuracy_drop_pairs_each_run_with_its_no_attack_twin():
    runs = pd.DataFrame(
        {
            "run_id": ["clean", "att1", "att2", "orphan", "failed", "clean2"],
            "baseline_run_id": [None, "clean", "clean", "missing", "clean2", None],
            "final_test_accuracy": [0.9, 0.4, 0.85, 0.5, None, 0.8],
            "status": ["ok", "ok", "ok", "ok", "failed", "ok"],
        }
    )
    out = add_accuracy_drop(runs)
    drop = dict(zip(out["run_id"], out["accuracy_drop"], strict=True))
    assert drop["clean"] == 0.0 and drop["clean2"] == 0.0
    assert math.isclose(drop["att1"], 0.5) and math.isclose(drop["att2"], 0.05)
    assert math.isnan(drop["orphan"])
    assert math.isclose(drop["failed"], 0.8)  # a failed attacked run: 0 accuracy, whole drop
    assert "accuracy_drop" not in runs  # the input is not modified
