"""Sequence-logo PNGs of one sequence's attributions (logomaker), one panel per method.

Each panel draws, at every position of the window the model sees, the observed base with
a height equal to its attribution (training scale; below the axis when it lowers
expression). Positions are numbered 1..seq_len along the window; the library's constant
flanks (the run's inferred design, else DREAM's) are shaded where the sequence carries them.
"""
from __future__ import annotations

import numpy as np

from dream_keras.data.sequences import ALPHABET
from dream_keras.data.synthetic import FLANK_3PRIME, FLANK_5PRIME
from dream_keras.explain.mutagenesis import observed_base_contribution

PANEL_TITLES = {
    "ism": "in-silico mutagenesis (observed base vs the average base)",
    "gradient_x_input": "gradient x input",
    "integrated_gradients": "integrated gradients",
}
WIDTH_INCHES, PANEL_INCHES, DPI = 14.0, 1.6, 80


def position_scores(arrays: dict, row: int) -> dict:
    """method -> [L] score of each window position for input row `row`."""
    scores = {}
    if "ism" in arrays:
        scores["ism"] = observed_base_contribution(arrays["ism"][row:row + 1])[0]
    for name in ("gradient_x_input", "integrated_gradients"):
        if name in arrays:
            scores[name] = np.asarray(arrays[name][row]).sum(-1)
    return scores


DREAM_FLANKS = (FLANK_5PRIME, FLANK_3PRIME)


def flanks_of_run(records: list) -> tuple[str, str]:
    """(5', 3') constant flanks to shade: the design a run inferred from its training file
    (run.json's `design`, recorded by runs with --teacher or --augment_*; for an ensemble,
    its first member that has one), else DREAM's."""
    for record in records:
        design = record.get("design") if isinstance(record, dict) else None
        if isinstance(design, dict) and all(isinstance(design.get(end), str)
                                            for end in ("prefix", "suffix")):
            return design["prefix"], design["suffix"]
    return DREAM_FLANKS


def flank_spans(sequence: str, seq_len: int, flanks=DREAM_FLANKS) -> list:
    """[(first, last)] 0-based window positions of the constant flanks (5', 3') the
    sequence holds."""
    prefix, suffix = (flank.upper() for flank in flanks)
    spans, start = [], seq_len - len(sequence)
    if suffix and sequence.upper().endswith(suffix):
        spans.append((seq_len - len(suffix), seq_len - 1))
    if prefix and sequence.upper().startswith(prefix):
        first, last = start, start + len(prefix) - 1
        if last >= 0:
            spans.append((max(first, 0), last))
    return spans


def draw_logo(path, scores: dict, codes: np.ndarray, *, title: str = "",
              flanks: list = (), dpi: int = DPI) -> None:
    """Write a PNG: one logo panel per method in `scores` (method -> [L])."""
    import logomaker
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    codes = np.asarray(codes)
    seq_len = len(codes)
    figure, axes = plt.subplots(len(scores), 1, figsize=(WIDTH_INCHES, PANEL_INCHES * len(scores)),
                                squeeze=False, sharex=True)
    for axis, (method, values) in zip(axes[:, 0], scores.items()):
        matrix = np.zeros((seq_len, 4))
        observed = codes < 4
        matrix[np.flatnonzero(observed), codes[observed]] = np.asarray(values)[observed]
        frame = pd.DataFrame(matrix, columns=list(ALPHABET))
        frame.index = np.arange(1, seq_len + 1)
        logo = logomaker.Logo(frame, ax=axis, color_scheme="classic")
        for first, last in flanks:
            logo.highlight_position_range(first + 1, last + 1, color="lightgrey", alpha=0.5)
        axis.axhline(0.0, color="black", linewidth=0.5)
        axis.set_title(PANEL_TITLES[method], fontsize=9, loc="left")
        axis.set_ylabel("expression", fontsize=8)
    axes[-1, 0].set_xticks(np.r_[1, np.arange(10, seq_len + 1, 10)])
    axes[-1, 0].set_xlabel(f"position in the {seq_len}-base window the model sees"
                           + (" (grey: constant flanks)" if flanks else ""), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
