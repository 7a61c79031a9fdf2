"""dream-prepare: convert a challenge text file into the HDF5 training cache.

    dream-prepare --input=train_sequences.txt --output=train.h5

Imports no TensorFlow, so it starts in well under a second.
"""
from __future__ import annotations

from absl import flags, logging

from dream_keras.cli import runner
from dream_keras.data.cache import prepare_cache
from dream_keras.data.readers import DEFAULT_CHUNK_ROWS
from dream_keras.data.sequences import DEFAULT_SEQ_LEN
from dream_keras.file_errors import check_input_file, writing
from dream_keras.safe_output import check_output_path

_INPUT = flags.DEFINE_string("input", None, "Text file of sequence<TAB>expression rows "
                             "(optionally gzipped).")
_OUTPUT = flags.DEFINE_string("output", None, "HDF5 cache to write (see docs/data.md, "
                              "'The HDF5 cache').")
_SEQ_LEN = flags.DEFINE_integer("seq_len", DEFAULT_SEQ_LEN, "Fixed length: keep the last "
                                "seq_len bases, left-pad shorter sequences with N.",
                                lower_bound=1)
_CHUNK_ROWS = flags.DEFINE_integer("chunk_rows", DEFAULT_CHUNK_ROWS, "Rows parsed per chunk; "
                                   "bounds peak memory (~1 KB per row).", lower_bound=1)
_SKIP_BAD_ROWS = flags.DEFINE_bool("skip_bad_rows", False, "Drop malformed rows and report "
                                   "how many, instead of stopping at the first one.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
runner.mark_required(["input", "output"])


def prepare_from_flags() -> None:
    check_input_file(_INPUT.value)
    check_output_path(_OUTPUT.value, inputs=[_INPUT.value], overwrite=_OVERWRITE.value)
    with writing(_OUTPUT.value):
        attrs = prepare_cache(_INPUT.value, _OUTPUT.value, seq_len=_SEQ_LEN.value,
                              chunk_rows=_CHUNK_ROWS.value,
                              skip_bad_rows=_SKIP_BAD_ROWS.value, overwrite=_OVERWRITE.value)
    logging.info("wrote %s: %d rows (%d skipped)", _OUTPUT.value, attrs["num_rows"],
                 attrs["skipped_rows"])


def main() -> None:
    runner.run(prepare_from_flags)


if __name__ == "__main__":
    main()
