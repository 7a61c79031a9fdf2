"""Flag predictions far outside what the model was trained on: finite, yet absurd.

NaN and infinity are refused where they appear (inference.refuse_non_finite); a finite
prediction can be as wrong. The faithful model's swish LSTM is unbounded, and a trained
run (docs/small_data.md, CV fold 4 seed 2) predicted -2.0e10 for one of its 1,474
held-out DREAM sequences (all others 7.9-15.6, on a 0-17 scale): one such value turned
that fold's Pearson r from 0.6 into -0.02, without a word.

The rule: a prediction is implausible outside the training targets' range widened by the
range's own width on each side, [minimum - w, maximum + w] with w = maximum - minimum
(DREAM's 0..17 gives [-17, 34]: no measurement can lie there, yet a model extrapolating
to a stronger promoter than any it saw stays inside). A target scaler written before
dream_keras recorded the range (`minimum`/`maximum` in target_scaler.json) uses the
training mean +/- 10 training standard deviations instead.

predict.py, evaluate.py and explain.py refuse such a prediction before anything is
written, naming its row, unless --allow_implausible (then written, with one warning
counting them); the Python API (dream_keras.inference) warns. A one-file ensemble leaves
an implausible member out of that sequence's mean (dream_keras.ensemble).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from absl import logging

from dream_keras.errors import DataFormatError

RANGE_WIDTHS = 1.0  # how far past the training range a prediction may go, in range widths
FALLBACK_STDS = 10.0  # scalers without a recorded range: mean +/- this many stds
ALLOW = "`allow_implausible=True`"  # the commands write it as --allow_implausible (runner)


def plausible_range(scaler) -> tuple[float, float]:
    """(low, high) on the training scale (the scale predictions are written in)."""
    if scaler.minimum is not None and scaler.maximum is not None:
        width = scaler.maximum - scaler.minimum
        return (scaler.minimum - RANGE_WIDTHS * width, scaler.maximum + RANGE_WIDTHS * width)
    return (scaler.mean - FALLBACK_STDS * scaler.std, scaler.mean + FALLBACK_STDS * scaler.std)


def standardised_plausible_range(scaler) -> tuple[float, float]:
    """(low, high) on the model's standardised output scale."""
    low, high = plausible_range(scaler)
    return (low - scaler.mean) / scaler.std, (high - scaler.mean) / scaler.std


def rule_text(scaler) -> str:
    """Where the plausible range comes from, for messages."""
    low, high = plausible_range(scaler)
    if scaler.minimum is not None and scaler.maximum is not None:
        source = (f"the training targets' range [{scaler.minimum:.6g}, {scaler.maximum:.6g}] "
                  "widened by its width on each side")
    else:
        source = (f"the training mean {scaler.mean:.6g} +/- {FALLBACK_STDS:g} training "
                  f"standard deviations ({scaler.std:.6g}); this target scaler predates "
                  "the recorded training range")
    return f"[{low:.6g}, {high:.6g}]: {source}"


def implausible_mask(values, scaler) -> np.ndarray:
    """Bool [n]: predictions (training scale) outside plausible_range. NaN is not counted
    here (refuse_non_finite refuses it); infinity is."""
    values = np.asarray(values, dtype=np.float64)
    low, high = plausible_range(scaler)
    return (values < low) | (values > high)


class PlausibilityCheck:
    """Checks every piece of predictions a command writes: refuses the first implausible
    one (DataFormatError naming `source` and the row, raised before anything is written),
    or with `allow` counts them for one warning at the end (`report`)."""

    def __init__(self, scaler, source, *, allow: bool = False, what: str = "predicts"):
        self.scaler, self.source, self.allow, self.what = scaler, source, allow, what
        self.count, self.first = 0, None

    def check(self, values, describe: Callable[[int], str], *, counted=None,
              hint: str = "") -> int:
        """Check `values` (training scale); `describe(index)` names the row of values[index].
        `counted`: bool mask of the values to check (default: all); `hint`: said after the
        refusal's reason. Returns how many were implausible (only with `allow`; otherwise
        those raise)."""
        values = np.asarray(values, dtype=np.float64)
        mask = implausible_mask(values, self.scaler)
        if counted is not None:
            mask &= np.asarray(counted, bool)
        bad = np.flatnonzero(mask)
        if not bad.size:
            return 0
        first = describe(int(bad[0]))
        if not self.allow:
            checked = mask.size if counted is None else int(np.sum(counted))
            more = (f" ({bad.size - 1} more among the {checked} checked with it)"
                    if bad.size > 1 else "")
            raise DataFormatError(
                self.source, None,
                f"the model {self.what} {values[bad[0]]:.6g} for {first}"
                f"{more}: outside the plausible range {rule_text(self.scaler)}. Its output "
                "for such an input is not to be trusted (an unbounded activation exploding "
                f"on a rare input){hint}; nothing was written. {ALLOW} writes such values "
                "anyway, with a warning counting them")
        self.count += bad.size
        self.first = self.first or f"{first} ({values[bad[0]]:.6g})"
        return int(bad.size)

    def report(self) -> str | None:
        """Log (and return) the warning for what `check` let through; None if nothing."""
        if not self.count:
            return None
        message = (f"{self.source}: the model {self.what} {self.count} value(s) outside the "
                   f"plausible range {rule_text(self.scaler)} (first: {self.first}); "
                   "written anyway (--allow_implausible): do not trust them")
        logging.warning("%s", message)
        return message


def warn_implausible(values, scaler, what: str = "predictions") -> int:
    """The Python API's check: log one warning naming the count and the first index of
    implausible `values` (training scale); returns the count."""
    bad = np.flatnonzero(implausible_mask(values, scaler))
    if bad.size:
        logging.warning("%d of %d %s lie outside the plausible range %s (first: index %d, "
                        "%.6g): do not trust them (dream_keras.plausibility)", bad.size,
                        len(np.asarray(values)), what, rule_text(scaler), bad[0],
                        np.asarray(values, np.float64)[bad[0]])
    return int(bad.size)
