"""The shipped flagfiles learn: short runs of flags/quickstart.flags and
flags/small_data.flags that a collapsed model (constant predictions: val_pearson ~0 or
NaN) fails. The faithful full-size model runs here because these tests are about the
shipped recipes; they are the suite's longest (see `make test`'s slowest-tests list)."""
import json
import zipfile

import pytest

from tests.conftest import REPO
from tests.run_helpers import history, run_train

pytestmark = pytest.mark.long(seconds=143)  # scheduled by length (tests/conftest.py)

# Validation r the shortened small-data recipe must pass (an untrained model scores ~0).
# Measured here with the recipe's LSTM constraints (cell feedback <= 0, recurrent norm cap
# 0.5), pre-training 2 x 60 steps: 0.105 and 0.315 after the pre-training epochs, 0.300
# and 0.315 after the fine-tuning ones. They slow the first steps: with 2 x 30 pre-training
# steps the best was 0.116 (without them 0.264, then 0.298 and 0.299), hence 60.
LEARNED = 0.2


@pytest.mark.timeout(900)  # its run_train timeout, above the suite's 600 s
def test_small_data_recipe_distils_and_learns_on_real_rows(tmp_path, real_train_file):
    """flags/small_data.flags as shipped (ridge teacher on the training rows, pre-training
    on generated sequences of the file's design, fine-tuning with reverse-complement
    augmentation, the LSTM constraints), its phases shortened to 120 pre-training and 30
    fine-tuning steps, on the 3,000 real rows in tests/data (2,700 training): validation r
    must rise well above an untrained model's and the run must end above its first epoch."""
    run_train(f"--flagfile={REPO / 'flags' / 'small_data.flags'}",
              f"--train_data={real_train_file}", f"--cache_path={tmp_path / 'rows.h5'}",
              f"--output_dir={tmp_path / 'run'}", "--pretrain_epochs=2",
              "--pretrain_steps_per_epoch=60", "--epochs=2", "--steps_per_epoch=15",
              "--nojit_compile", timeout=900)
    rows = history(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["pretrain"] * 2 + ["finetune"] * 2
    val = [float(r["val_pearson"]) for r in rows]
    assert max(val) > LEARNED, val
    assert val[-1] > val[0], val
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["teachers"][0]["teacher"] == "ridge"
    assert record["teachers"][0]["train_rows"] == record["data"]["train_rows"]
    assert record["diverged_epochs"] == []
    # The saved LSTM carries the recipe's constraint (both directions), so fine-tuning
    # this model.keras keeps it.
    config = json.loads(zipfile.ZipFile(tmp_path / "run" / "model.keras").read("config.json"))
    constraints = list(_values_of("recurrent_constraint", config))
    assert len(constraints) == 2, constraints
    for constraint in constraints:
        assert constraint["class_name"] == "NonPositiveCellFeedback", constraint
        assert constraint["config"] == {"max_norm": 0.5}, constraint


def _values_of(key: str, tree):
    """Every value stored under `key` anywhere in a nested JSON config."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            if name == key:
                yield value
            else:
                yield from _values_of(key, value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _values_of(key, item)


@pytest.mark.timeout(900)  # its run_train timeout, above the suite's 600 s
def test_quickstart_settings_learn_without_collapsing(tmp_path):
    """As shipped, on fewer rows and steps: a too-high learning rate collapsed exactly
    here (RMSprop 1e-3 and Adam 1e-3: prediction std < 0.001 within 200 steps).
    Validation r measured on these 6,000 rows: as shipped 0.047 / 0.242 / 0.222 / 0.299
    after 100 / 200 / 300 / 400 steps; at RMSprop 1e-3 0.040 / -0.071 after 100 / 200.
    Without XLA, as the small-data test: the recipe's learning is what is tested here (the
    same maths; 0.296 with XLA and 0.313 without after 200 steps, measured 2026-12-03),
    and on one thread the run took 152 s with XLA against 80 without, its compilation
    included. XLA training is tested on the small model (tests/test_smoke.py,
    tests/test_model.py) and on replicas (tests/test_distributed_replicas.py)."""
    run_train(f"--flagfile={REPO / 'flags' / 'quickstart.flags'}",
              f"--train_data={tmp_path / 'synthetic.txt'}", f"--output_dir={tmp_path / 'run'}",
              "--synthetic_rows=6000", "--epochs=1", "--steps_per_epoch=200",
              "--nojit_compile", timeout=900)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["best_metrics"]["val_pearson"] > 0.15, record["best_metrics"]
