"""dream-synthetic: write the package's synthetic DREAM-format data set (see data/synthetic.py).

    dream-synthetic --output=data/synthetic_train.txt --rows=100000 --seed=0
"""
from __future__ import annotations

import time

from absl import flags, logging

from dream_keras.cli import runner
from dream_keras.data.synthetic import DEFAULT_CHUNK_ROWS, MAX_SEED, write_dream_file
from dream_keras.file_errors import writing
from dream_keras.safe_output import check_output_path

_OUTPUT = flags.DEFINE_string("output", None, "File to write (DREAM format; gzipped when the "
                              "name ends in .gz). Parent directories are created.")
runner.mark_required(["output"])
_ROWS = flags.DEFINE_integer("rows", 100_000, "Number of rows to write.", lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (0 to 2**32 - 1): the same seed writes "
                             "the same bytes.", lower_bound=0, upper_bound=MAX_SEED)
_CHUNK_ROWS = flags.DEFINE_integer("chunk_rows", DEFAULT_CHUNK_ROWS, "Rows generated per "
                                   "chunk; bounds peak memory (~1 KB per row); does not "
                                   "change the output.", lower_bound=1)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")


def synthesise_from_flags() -> None:
    started = time.monotonic()
    check_output_path(_OUTPUT.value, overwrite=_OVERWRITE.value)
    with writing(_OUTPUT.value):
        rows = write_dream_file(_OUTPUT.value, _ROWS.value, _SEED.value,
                                chunk_rows=_CHUNK_ROWS.value, overwrite=_OVERWRITE.value,
                                show_progress=True)
    logging.info("wrote %s: %d rows, seed %d, in %.1f s", _OUTPUT.value, rows, _SEED.value,
                 time.monotonic() - started)


def main() -> None:
    runner.run(synthesise_from_flags)


if __name__ == "__main__":
    main()
