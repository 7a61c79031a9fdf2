"""Motifs across many sequences: TF-MoDISco (the optional modisco-lite package) on the
attributions explain wrote, plus its input files so it can be rerun by hand.

Inputs in modisco-lite's format: `ohe.npz` (one-hot, member arr_0 [n, 4, L]) and
`hypothetical.npz` (hypothetical contributions, same shape): the contribution each base
WOULD make at each position, mean-centred per position, from centred ISM (default: exact)
or the centred input gradient. Rerun by hand with
`modisco motifs -s ohe.npz -a hypothetical.npz -n 2000 -w L -z 11 -f 5 -t 15 -g 5 -j 0
-l 2 -o modisco_results.h5` (MODISCO_SETTINGS as that command's options).
"""
from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
from absl import logging

from dream_keras.data.sequences import one_hot
from dream_keras.errors import ConfigurationError

SOURCES = ("ism", "gradient")
OHE_FILE, HYPOTHETICAL_FILE = "ohe.npz", "hypothetical.npz"
RESULTS_FILE, REPORT_DIR = "modisco_results.h5", "report"
# Yeast sites are 6-13 bases; the library's defaults (21-base cores, 30-base trims) suit
# 1 kb ChIP peaks, not 110-base promoters.
MODISCO_SETTINGS = dict(sliding_window_size=11, flank_size=5, trim_to_window_size=15,
                        initial_flank_to_add=5, final_flank_to_add=0, n_leiden_runs=2,
                        target_seqlet_fdr=0.05)


def hypothetical_contributions(arrays, source: str) -> np.ndarray:
    """float32 [n, L, 4]: per-position mean-centred ISM or gradient; 0 where the window
    holds N."""
    if source not in SOURCES:
        raise ConfigurationError(f"motif source must be one of {SOURCES}, got {source!r}")
    name = "ism" if source == "ism" else "gradient"
    if name not in arrays:
        raise ConfigurationError(f"--motifs from {source} needs the "
                                 f"{'ism' if source == 'ism' else 'gradient_x_input'} method")
    values = np.nan_to_num(np.asarray(arrays[name], np.float32))
    centred = values - values.mean(-1, keepdims=True)
    return np.where((np.asarray(arrays["codes"]) < 4)[..., None], centred, 0.0).astype(np.float32)


def write_modisco_inputs(h5_path, output_dir, source: str = "ism") -> tuple[str, str]:
    """Write ohe.npz and hypothetical.npz ([n, 4, L] each) from explain's HDF5 file."""
    os.makedirs(output_dir, exist_ok=True)
    with h5py.File(h5_path, "r") as arrays:
        hypothetical = hypothetical_contributions(arrays, source)
        sequences = one_hot(np.asarray(arrays["codes"]))
    paths = os.path.join(output_dir, OHE_FILE), os.path.join(output_dir, HYPOTHETICAL_FILE)
    np.savez_compressed(paths[0], sequences.transpose(0, 2, 1))
    np.savez_compressed(paths[1], hypothetical.transpose(0, 2, 1))
    return paths


def remove_outputs(output_dir) -> None:
    """Remove the files `write_modisco_inputs` and `run_modisco` write in `output_dir` (and
    the report folder modisco-lite writes), so no results of older attributions remain."""
    for name in (OHE_FILE, HYPOTHETICAL_FILE, RESULTS_FILE):
        if os.path.isfile(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    shutil.rmtree(os.path.join(output_dir, REPORT_DIR), ignore_errors=True)


def modisco_available() -> bool:
    try:
        import modiscolite  # noqa: F401
    except ImportError:
        return False
    return True


def run_modisco(output_dir, *, max_seqlets: int = 2000, meme_db=None) -> str:
    """TF-MoDISco on the inputs in output_dir; writes modisco_results.h5 and an HTML report
    (motif logos; TOMTOM matches when `meme_db`, a MEME motif file, is given)."""
    if not modisco_available():
        raise ConfigurationError("--motifs needs modisco-lite: pip install "
                                 "'dream_keras[motifs]' (the inputs are written to "
                                 f"{output_dir} for a later run)")
    import modiscolite

    sequences = np.load(os.path.join(output_dir, OHE_FILE))["arr_0"].transpose(0, 2, 1)
    hypothetical = np.load(os.path.join(output_dir, HYPOTHETICAL_FILE))["arr_0"].transpose(0, 2, 1)
    logging.info("TF-MoDISco on %d sequences", len(sequences))
    positive, negative = modiscolite.tfmodisco.TFMoDISco(
        one_hot=sequences.astype(np.float32), hypothetical_contribs=hypothetical,
        max_seqlets_per_metacluster=max_seqlets, **MODISCO_SETTINGS)
    results = os.path.join(output_dir, RESULTS_FILE)
    modiscolite.io.save_hdf5(results, positive, negative, sequences.shape[1])
    report = os.path.join(output_dir, REPORT_DIR)
    if positive or negative:
        modiscolite.report.report_motifs(results, report, img_path_suffix="./",
                                         meme_motif_db=meme_db,
                                         is_writing_tomtom_matrix=False)
    return results
