"""Shared test fixtures and settings: the real DREAM samples sliced into tests/data (see its
README), the one small model of the suite, a saved small run, a small prepared cache.

Fixtures live here and only here (pytest hands them to every test file); plain helper
functions live in tests/saved_run.py, tests/run_helpers.py and tests/layer_test_utils.py.
"""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per process: `make test` runs two workers on two cores, and each
# worker's training processes otherwise bring thread pools sized to every core, whose
# spinning threads compete with the other worker's. Measured in one whole suite each, on 2
# cores (2026-12-03): 573 s wall and 1,048 CPU-s with TensorFlow's default pools, 463 s
# and 840 CPU-s with one thread. Set before anything imports TensorFlow (and before
# tests/warm_fork.py's server starts), so every test process and child inherits it.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # NumPy's BLAS (the ridge fits)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
DREAM_DIR = TEST_DATA / "dream2022"
REAL_TRAIN_ROWS = 3000  # the first 3,000 rows of de_boer_demo_train.txt

# THE small model of the suite: the faithful model's layers and code paths (one 5 bp conv
# branch, one 8-wide transformer block, the BiLSTM head) at a fraction of its compile time.
# Tests about the faithful model itself (sizes, the original's numbers) build it in full.
SMALL_MODEL = {"conv_kernel_sizes": (5,), "conv_filters": 16, "conv_out_filters": 8,
               "key_size": 8, "value_size": 8, "num_transformer_blocks": 1}


def pytest_collection_modifyitems(items):
    """Modules marked `long` (pytestmark = pytest.mark.long(seconds=S), S: the module's
    time in a whole-suite run) run first, the longest first: `make test` deals whole files
    to two workers (pytest-xdist --dist loadfile), which finish together only when the
    longest files do not start last. Longest-first ended the suite 9 s sooner than the
    alphabetical order of the long files (344 s against 353 s, replayed with each test's
    measured time, 2026-12-03). A stable sort: the order is otherwise kept. S is only a
    scheduling hint; a stale one costs seconds, never a test."""
    def seconds(item):
        marker = item.get_closest_marker("long")
        return marker.kwargs.get("seconds", 0) if marker else 0

    items.sort(key=lambda item: -seconds(item))


def small_model_flags() -> list:
    """SMALL_MODEL as train.py flags."""
    return [f"--{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
            for name, value in SMALL_MODEL.items()]


@pytest.fixture(scope="session")
def dream_dir() -> pathlib.Path:
    return DREAM_DIR


@pytest.fixture(scope="session")
def real_train_file() -> pathlib.Path:
    return DREAM_DIR / "train_sample" / "de_boer_demo_train.head3000.txt"


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> pathlib.Path:
    """RUN/model.keras of a saved small run (untrained; see tests/saved_run.py)."""
    from tests.saved_run import save_small_run

    return save_small_run(tmp_path_factory.mktemp("small_run"))


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory) -> pathlib.Path:
    """A prepared HDF5 cache of 320 synthetic rows (seed 11)."""
    from tests.run_helpers import synthetic_cache

    return synthetic_cache(tmp_path_factory, 320)
