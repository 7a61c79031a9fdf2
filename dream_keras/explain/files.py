"""Explain every sequence of a file: HDF5 arrays, a tidy TSV and logos, streamed in pieces.

The reader is predict.py's (any input format it accepts), so memory holds one piece of
sequences (and their mutants or path points) at a time, whatever the file's size.
Outputs go into one directory, written under temporary names and moved into place only
when the whole input was explained; an existing non-empty directory is refused unless
`overwrite`, which then replaces only this package's own outputs there (the HDF5 file, the
TSV, logos/row<i>.png, modisco/'s files), never another file.
"""
from __future__ import annotations

import os
import re
import shutil

import h5py
import numpy as np
from absl import logging

from dream_keras import atomic_files
from dream_keras.data.readers import DEFAULT_CHUNK_ROWS, DataFormatError, iter_sequence_chunks
from dream_keras.data.sequences import N_CODE, InvalidSequenceError
from dream_keras.errors import ConfigurationError, OutputExistsError
from dream_keras.file_errors import check_input_file
from dream_keras.plausibility import PlausibilityCheck, implausible_mask
from dream_keras.safe_output import check_output_path
from dream_keras.explain import core, gradients, logos, motifs
from dream_keras.explain.model_access import DEFAULT_BATCH_SIZE, encode_strands, model_seq_len
from dream_keras.strand_layers import refuse_second_strand_average

H5_FILE, TSV_FILE, LOGO_DIR = "attributions.h5", "attributions.tsv", "logos"
_OUTPUT_NAMES = (H5_FILE, TSV_FILE, LOGO_DIR)  # what explain writes under temporary names
# Sequences explained at a time: ISM turns 64 into ~21,000 mutant rows (~83 full batches
# of 256, so the one padded batch costs ~1 %), a few MB of codes.
PIECE_SEQUENCES = 64
WINDOW_NOTE = ("arrays cover the window the model sees: the LAST seq_len bases of each "
               "sequence, left-padded with N (codes 4); values on the training data's scale")
LOGO_NAME = re.compile(r"row\d+\.png")  # logos/ files this package draws
MODISCO_DIR = "modisco"
TSV_COLUMNS = ("row", "position", "sequence_position", "base", "ism_A", "ism_C", "ism_G",
               "ism_T", "ism_position", "gradient_x_input", "integrated_gradients")


def check_output_dir(output_dir, overwrite: bool, inputs=()) -> None:
    """Refuse early (before loading a model) to mix outputs into a non-empty directory
    (a killed explain's temporary files do not count: the next one removes them), and
    an output that is one of `inputs` (--overwrite would replace the input)."""
    if os.path.isfile(output_dir):
        raise OutputExistsError(f"{output_dir}: is a file, not an output directory")
    for name in (H5_FILE, TSV_FILE):
        check_output_path(os.path.join(output_dir, name), inputs=inputs, overwrite=True,
                          parameter="output_dir", in_directory=True)
    if os.path.isdir(output_dir):
        for name, ours in ((H5_FILE, _h5_is_ours), (TSV_FILE, _tsv_is_ours)):
            path = os.path.join(output_dir, name)
            if os.path.lexists(path) and not ours(path):
                raise OutputExistsError(f"{path}: exists and was not written by explain; "
                                        "move it or choose another output directory")
    if os.path.isdir(output_dir) and not overwrite and [
            name for name in os.listdir(output_dir)
            if atomic_files.dead_writers_destination(name) not in _OUTPUT_NAMES]:
        raise OutputExistsError(f"{output_dir}: output directory is not empty; pass "
                                "--overwrite to replace its explain outputs")


def _h5_is_ours(path) -> bool:
    """An attributions.h5 that explain wrote (its window note): --overwrite replaces only
    that, never a file of the user's that happens to share the name."""
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("note") == WINDOW_NOTE
    except (OSError, ValueError):
        return False


def _tsv_is_ours(path) -> bool:
    """An attributions.tsv that explain wrote (its header line)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\n") == "\t".join(TSV_COLUMNS)
    except (OSError, ValueError):
        return False


def _pieces(input_path, chunk_rows: int, piece_rows: int):
    for chunk in iter_sequence_chunks(input_path, chunk_rows):
        for start in range(0, len(chunk.sequences), piece_rows):
            yield chunk.sequences[start:start + piece_rows], \
                chunk.line_numbers[start:start + piece_rows]


class _H5Writer:
    """Appends each piece's arrays to resizable datasets (row axis first)."""

    def __init__(self, path, attributes: dict):
        self.file = h5py.File(path, "w")
        self.file.attrs.update(attributes)

    def append(self, arrays: dict) -> None:
        for name, values in arrays.items():
            values = np.asarray(values)
            if values.dtype.kind == "U" or values.dtype == object:
                values = values.astype(object)
                dtype = h5py.string_dtype()
            else:
                dtype = values.dtype
            if name not in self.file:
                self.file.create_dataset(name, shape=(0,) + values.shape[1:],
                                         maxshape=(None,) + values.shape[1:], dtype=dtype,
                                         chunks=(max(1, min(256, len(values))),) + values.shape[1:],
                                         compression="gzip", compression_opts=1)
            dataset = self.file[name]
            start = dataset.shape[0]
            dataset.resize(start + len(values), axis=0)
            dataset[start:] = values

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


def tidy_rows(arrays: dict, first_row: int) -> list:
    """TSV lines, one per (sequence, position of the input in the window): an N of the
    input included, the N padding of a short sequence not."""
    codes = arrays["codes"]
    seq_len = codes.shape[1]
    lines = []
    rows, positions = np.nonzero(codes < 5)
    offsets = arrays["length"][rows] - seq_len  # string index = position + length - L
    ism = arrays.get("ism")
    ism_position = arrays.get("ism_position")
    gxi = arrays["gradient_x_input"].sum(-1) if "gradient_x_input" in arrays else None
    ig = arrays["integrated_gradients"].sum(-1) if "integrated_gradients" in arrays else None
    for row, position, offset in zip(rows.tolist(), positions.tolist(), offsets.tolist()):
        string_position = position + offset
        if string_position < 0:
            continue  # padding
        fields = [str(first_row + row), str(position + 1), str(string_position + 1),
                  "ACGTN"[codes[row, position]]]
        fields += ([f"{v:.6g}" for v in ism[row, position]] + [f"{ism_position[row, position]:.6g}"]
                   if ism is not None else [""] * 5)
        fields.append(f"{gxi[row, position]:.6g}" if gxi is not None else "")
        fields.append(f"{ig[row, position]:.6g}" if ig is not None else "")
        lines.append("\t".join(fields) + "\n")
    return lines


def explain_file(model, scaler, input_path, output_dir, *, methods=core.METHODS,
                 logo_rows=(), reverse_complement_average: bool = False,
                 steps: int = gradients.DEFAULT_STEPS,
                 baseline: str = gradients.DEFAULT_BASELINE,
                 batch_size: int = DEFAULT_BATCH_SIZE, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 piece_sequences: int = PIECE_SEQUENCES, write_tsv: bool = True,
                 overwrite: bool = False, jit_compile: bool = True, logo_dpi: int = logos.DPI,
                 flanks=logos.DREAM_FLANKS, allow_implausible: bool = False) -> dict:
    """Explain every sequence of `input_path`; returns {'rows', 'h5', 'tsv', 'logos'}.

    `logo_rows`: 0-based input rows to draw ('all' for every row); `flanks`: the (5', 3')
    constant flanks their logos shade (logos.flanks_of_run gives a run's). A prediction
    (of a sequence, a mutant of it, or the integrated-gradients baseline) outside the
    plausible range (dream_keras.plausibility) is refused before anything is written,
    unless `allow_implausible` (written, with a warning).
    """
    methods = core.check_methods(methods)
    if reverse_complement_average:
        refuse_second_strand_average(model)
    check_input_file(input_path)
    check_output_dir(output_dir, overwrite, inputs=[input_path])
    wanted = None if logo_rows == "all" else set(int(row) for row in logo_rows)
    _refuse_logo_rows_past_the_end(wanted, input_path, chunk_rows)
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    atomic_files.remove_stale_partials(output_dir, _OUTPUT_NAMES)  # a killed explain's
    seq_len = model_seq_len(model)
    h5_path, tsv_path = (os.path.join(output_dir, name) for name in (H5_FILE, TSV_FILE))
    # Written under temporary names (atomic_files' scheme) and renamed at the end.
    partial = {path: atomic_files.partial_path(path) for path in (h5_path, tsv_path)}
    logo_dir = atomic_files.partial_path(os.path.join(output_dir, LOGO_DIR))
    drawn, rows = [], 0
    plausible = PlausibilityCheck(scaler, input_path, allow=allow_implausible)
    writer = _H5Writer(partial[h5_path], {
        "methods": ",".join(methods), "seq_len": seq_len, "scaler_mean": scaler.mean,
        "scaler_std": scaler.std, "reverse_complement_average": reverse_complement_average,
        "integrated_gradients_steps": steps, "integrated_gradients_baseline": baseline,
        "input": os.path.abspath(input_path), "note": WINDOW_NOTE})
    tsv = open(partial[tsv_path], "w", newline="\n") if write_tsv else None
    try:
        if tsv:
            tsv.write("\t".join(TSV_COLUMNS) + "\n")
        for sequences, line_numbers in _pieces(input_path, chunk_rows, piece_sequences):
            try:
                codes, reverse_codes = encode_strands(sequences, seq_len,
                                                      reverse_complement_average)
            except InvalidSequenceError as error:
                raise DataFormatError(input_path, int(line_numbers[error.row]),
                                      str(error)) from None
            lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
            arrays = core.explain_encoded(model, scaler, codes, reverse_codes, lengths,
                                          methods=methods, steps=steps, baseline=baseline,
                                          batch_size=batch_size, jit_compile=jit_compile)
            _refuse_non_finite(arrays, input_path, rows)
            _check_plausible(arrays, plausible, rows, baseline)
            writer.append({"sequence": np.array(sequences, dtype=object),
                           "line": np.asarray(line_numbers, np.int64), **arrays})
            if tsv:
                tsv.writelines(tidy_rows(arrays, rows))
            for index, sequence in enumerate(sequences):
                if wanted is None or rows + index in wanted:
                    drawn.append(_draw(logo_dir, rows + index, sequence, arrays, index,
                                       seq_len, logo_dpi, flanks))
            rows += len(sequences)
            logging.log_every_n_seconds(logging.INFO, "explained %d sequences", 10, rows)
        writer.close()
        if tsv:
            tsv.close()
        _remove_stale_outputs(output_dir, write_tsv)
        for path, temporary in partial.items():
            if os.path.exists(temporary):
                os.replace(temporary, path)
        drawn = _move_logos(logo_dir, os.path.join(output_dir, LOGO_DIR), drawn)
        plausible.report()
    finally:
        writer.close()
        if tsv and not tsv.closed:
            tsv.close()
        for temporary in partial.values():
            if os.path.exists(temporary):
                os.remove(temporary)
        shutil.rmtree(logo_dir, ignore_errors=True)
        if created and not os.listdir(output_dir):
            os.rmdir(output_dir)  # a refused input leaves no empty directory behind
    return {"rows": rows, "h5": h5_path, "tsv": tsv_path if write_tsv else None,
            "logos": drawn}


# The arrays that hold what the model computed (a diverged model gives NaN in them).
_MODEL_ARRAYS = ("prediction", "ism", "gradient", "gradient_x_input", "integrated_gradients",
                 "baseline_prediction")


def _refuse_non_finite(arrays: dict, input_path, first_row: int) -> None:
    """Refuse (before anything is written) a NaN or infinity in what the model computed:
    attributions of a diverged model mean nothing, as its predictions do (predict.py and
    evaluate.py refuse them too)."""
    for name in _MODEL_ARRAYS:
        if name not in arrays:
            continue
        values = np.asarray(arrays[name], np.float64)
        if name == "ism":  # NaN by design where the window holds N (nothing to mutate)
            values = np.where((np.asarray(arrays["codes"]) == N_CODE)[..., None], 0.0, values)
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if not finite.all():
            row = first_row + int(np.flatnonzero(~finite)[0])
            raise DataFormatError(input_path, None, f"the model's {name} for sequence {row} "
                                  "(0-based) is not a finite number (its weights diverged "
                                  "or overflow); nothing was written")


def _refuse_logo_rows_past_the_end(wanted, input_path, chunk_rows: int) -> None:
    """Logo rows the input does not have, refused before any work (explaining costs
    minutes, and a row number past the end is a mistake to say at once). Counting reads
    the input once more: cheap beside explaining it."""
    if not wanted:
        return
    total = sum(len(chunk.sequences) for chunk in iter_sequence_chunks(input_path, chunk_rows))
    missing = sorted(row for row in wanted if not 0 <= row < total)
    if missing:
        raise ConfigurationError(f"`logo_rows` {', '.join(map(str, missing[:10]))}: "
                                 f"{input_path} has {total} sequences (0-based rows "
                                 f"0-{total - 1}); nothing was done")


def _check_plausible(arrays: dict, plausible: PlausibilityCheck, first_row: int,
                     baseline: str) -> None:
    """Every prediction the arrays hold, checked for plausibility: each sequence's, each
    single-base mutant's (prediction + ism, at the bases the sequence does not have, of
    sequences whose own prediction passed; N positions are NaN and not counted) and the
    integrated-gradients baseline's."""
    prediction = np.asarray(arrays["prediction"], np.float64)
    plausible.check(prediction, lambda index: f"sequence {first_row + index} (0-based)")
    if "ism" in arrays:
        mutants = prediction[:, None, None] + np.asarray(arrays["ism"], np.float64)
        codes = np.asarray(arrays["codes"])
        # [n, L, 4]: a base the sequence does not have, at a position that holds one
        substituted = (codes[..., None] != np.arange(4)) & (codes < N_CODE)[..., None]
        substituted &= ~implausible_mask(prediction, plausible.scaler)[:, None, None]

        def mutant(index):
            row, position, base = np.unravel_index(index, mutants.shape)
            return (f"sequence {first_row + row} (0-based) with base {'ACGT'[base]} at "
                    f"window position {position + 1} (1-{mutants.shape[1]}, as "
                    "attributions.tsv counts)")
        plausible.check(mutants.reshape(-1), mutant, counted=substituted.reshape(-1))
    if "baseline_prediction" in arrays:
        plausible.check(arrays["baseline_prediction"], lambda index: "the integrated-"
                        f"gradients baseline of sequence {first_row + index} (0-based)",
                        hint=" (the baseline, not the sequence: `baseline="
                        f"'{'uniform' if baseline == 'zeros' else 'zeros'}'` gives another)")


def _remove_stale_outputs(output_dir, write_tsv: bool) -> None:
    """Remove what an earlier explain wrote that the new outputs do not replace: a TSV
    (when this run writes none), logos/row<i>.png, and modisco/'s files (they describe the
    old attributions); another file, and a folder still holding one, is kept."""
    if not write_tsv and os.path.isfile(os.path.join(output_dir, TSV_FILE)):
        os.remove(os.path.join(output_dir, TSV_FILE))
    logo_dir = os.path.join(output_dir, LOGO_DIR)
    if os.path.isdir(logo_dir):
        for name in os.listdir(logo_dir):
            if LOGO_NAME.fullmatch(name) and os.path.isfile(os.path.join(logo_dir, name)):
                os.remove(os.path.join(logo_dir, name))
    motifs.remove_outputs(os.path.join(output_dir, MODISCO_DIR))
    for directory in (logo_dir, os.path.join(output_dir, MODISCO_DIR)):
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)


def _move_logos(drawn_dir, logo_dir, drawn: list) -> list:
    """Move the logos drawn under a temporary folder into `logo_dir`; their new paths."""
    if not drawn:
        return []
    os.makedirs(logo_dir, exist_ok=True)
    moved = []
    for path in drawn:
        moved.append(os.path.join(logo_dir, os.path.basename(path)))
        os.replace(path, moved[-1])
    return moved


def _draw(directory, row: int, sequence: str, arrays: dict, index: int, seq_len: int,
          dpi: int, flanks) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"row{row}.png")
    logos.draw_logo(path, logos.position_scores(arrays, index), arrays["codes"][index],
                    title=f"row {row}: predicted expression {arrays['prediction'][index]:.3f}",
                    flanks=logos.flank_spans(sequence, seq_len, flanks), dpi=dpi)
    return path

