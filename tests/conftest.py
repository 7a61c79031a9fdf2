"""Shared test fixtures: the real DREAM samples sliced into tests/data (see its README)."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
DREAM_DIR = TEST_DATA / "dream2022"
REAL_TRAIN_ROWS = 3000  # the first 3,000 rows of de_boer_demo_train.txt


@pytest.fixture(scope="session")
def dream_dir() -> pathlib.Path:
    return DREAM_DIR


@pytest.fixture(scope="session")
def real_train_file() -> pathlib.Path:
    return DREAM_DIR / "train_sample" / "de_boer_demo_train.head3000.txt"
