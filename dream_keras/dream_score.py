"""The DREAM Challenge 2022 official score: weighted per-subset Pearson r² and Spearman rho.

The organisers' scoring computes, for each test subset, the correlation between predicted
and measured expression (for the pair subsets SNVs, motif perturbation and motif tiling:
between predicted and measured alt-minus-ref DIFFERENCES) and combines them as

    Pearson score  = sum(weight * r²)  / 4.65
    Spearman score = sum(weight * rho) / 4.65

"all" is, as the official scoring defines it for the positions it scores, every labelled
test position that can be predicted: here every labelled position whose sequence is known (single positions and both
members of pairs, across all subsets, each position once). A subset with no labelled
sequence (the SNV sequences are not public) is reported as missing; the official formula
then counts it as 0, and a renormalised score over the weights actually used is reported
beside it under its own name. Scoring is a pure function of predictions and labels, so it
is testable without a model; `load_dream_test_set` reads the challenge's file layout.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from dream_keras.metrics import pearson_r, spearman_rho
from dream_keras.errors import DataFormatError, MissingDataError
from dream_keras.file_errors import check_input_file, reading

SUBSET_WEIGHTS = {
    "all": 1.0, "high": 0.3, "low": 0.3, "yeast": 0.3, "random": 0.3, "challenging": 0.5,
    "SNVs": 1.25, "motif_perturbation": 0.3, "motif_tiling": 0.4,
}
OFFICIAL_DENOMINATOR = 4.65  # the sum of SUBSET_WEIGHTS, as the organisers wrote it
# A subset scored from fewer rows is reported but not counted: a correlation of 2 points is
# always +-1, of a handful little better than noise. The smallest real subset has 96 rows.
MIN_SUBSET_ROWS = 10
PAIR_SUBSETS = ("SNVs", "motif_perturbation", "motif_tiling")
SINGLE_SUBSETS = ("high", "low", "yeast", "random", "challenging")

_INTEGER = re.compile(r"[+-]?\d+(\.0*)?")
_NOT_A_BASE = re.compile(r"[^ACGTNacgtn]")

# Subset name -> (test_subsets/<name>.csv, public_leaderboard/<name>.json) file stems.
SUBSET_FILES = {
    "high": ("high_exp_seqs", "high_exp_indices"),
    "low": ("low_exp_seqs", "low_exp_indices"),
    "yeast": ("yeast_seqs", "yeast_exp_indices"),
    "random": ("all_random_seqs", "random_exp_indices"),
    "challenging": ("challenging_seqs", "challenging_exp_indices"),
    "SNVs": ("all_SNVs_seqs", "SNVs_exp_indices"),
    "motif_perturbation": ("motif_perturbation_seqs", "motif_perturbation_exp_indices"),
    "motif_tiling": ("motif_tiling_seqs", "motif_tiling_exp_indices"),
}
ALL_DEFINITION = ("every labelled test position with a known sequence (single positions and "
                  "both members of pairs, across all subsets, each position once)")


@dataclasses.dataclass
class DreamTestSet:
    """What scoring needs: position -> sequence / label, and each subset's members.

    single_subsets: name -> int64 [n] positions; pair_subsets: name -> int64 [n, 2]
    (alt_pos, ref_pos). Membership may include positions without a label or sequence.
    """

    sequences: dict
    labels: dict
    single_subsets: dict
    pair_subsets: dict
    missing_files: list = dataclasses.field(default_factory=list)

    def positions_to_predict(self) -> list:
        """Sorted positions that are both labelled and have a known sequence."""
        return sorted(set(self.sequences) & set(self.labels))


def score_predictions(predictions: Mapping[int, float], test_set: DreamTestSet, *,
                      min_rows: int = MIN_SUBSET_ROWS) -> dict:
    """The official score of `predictions` {position: value} against `test_set`'s labels.

    Returns a JSON-ready dict: per subset n, pearson, pearson_r2, spearman, weight and a
    status ('scored', 'missing': nothing to score, 'too_few_rows': fewer than `min_rows`
    rows, whose correlation means nothing, so it is treated as missing, 'undefined': a
    constant side, counted as 0); the official `pearson_score` / `spearman_score` (missing
    subsets count 0, /4.65) and `renormalised_*_score` (divided by the weights of the
    subsets actually scored). `missing_files` lists the layout's absent files.
    Only the predicted positions are scored (a subset none of whose positions is predicted
    is 'missing'); a NaN or infinite prediction is refused (ValueError). Predictions that
    leave out scorable positions (labelled, sequence known) or name positions the test set
    does not hold (an off-by-one numbering, say) make the score partial and are counted in
    `unpredicted_positions` / `unknown_positions`, with a warning: the subsets' n then
    shrink silently otherwise.
    """
    predictions = {int(p): float(v) for p, v in predictions.items()}
    not_finite = [p for p, v in predictions.items() if not math.isfinite(v)]
    if not_finite:
        raise ValueError(f"the prediction for position {min(not_finite)} is "
                         f"{predictions[min(not_finite)]}, not a finite number: a subset "
                         "holding it would score as undefined (0)")
    labels = {int(p): float(v) for p, v in test_set.labels.items()}
    subsets = {}
    for name, kept in scored_members(test_set, set(predictions)).items():
        result = (_pair_subset_result if name in PAIR_SUBSETS else _single_subset_result)
        subsets[name] = result(kept, predictions, labels)
    for name, result in subsets.items():
        result["weight"] = SUBSET_WEIGHTS[name]
        result["kind"] = "pair difference" if name in PAIR_SUBSETS else "single"
        if 0 < result["n"] < min_rows:
            result.update(pearson=None, pearson_r2=None, spearman=None,
                          status="too_few_rows")
    combined = _combined(subsets)
    combined.update(_coverage(predictions, test_set))
    combined["complete"] = combined["complete"] and not combined["unpredicted_positions"]
    combined["min_subset_rows"] = int(min_rows)
    combined["missing_files"] = list(test_set.missing_files)
    return combined


def _coverage(predictions: Mapping[int, float], test_set: DreamTestSet) -> dict:
    """How the predicted positions cover the scorable ones; warns when they differ."""
    scorable = set(test_set.positions_to_predict())
    unpredicted = len(scorable - set(predictions))
    unknown = sorted(set(predictions) - set(test_set.labels) - set(test_set.sequences))
    if unpredicted:
        warnings.warn(f"{unpredicted} of {len(scorable)} scorable test positions have no "
                      "prediction: the subsets are scored on the predicted positions only",
                      stacklevel=3)
    if unknown:
        warnings.warn(f"{len(unknown)} predicted positions are not in the test set (the "
                      f"first: {unknown[0]}): is the numbering the test set's?", stacklevel=3)
    return {"scorable_positions": len(scorable), "unpredicted_positions": unpredicted,
            "unknown_positions": len(unknown)}


def scored_members(test_set: DreamTestSet, predicted) -> dict:
    """Subset name -> what gets scored of it, given the `predicted` positions: sorted
    labelled positions (pairs (alt, ref) whose members are both labelled and predicted for
    the pair subsets), each once; "all" is every labelled predicted position."""
    usable = set(predicted) & {int(p) for p in test_set.labels}
    members = {"all": sorted(usable)}
    for name in SINGLE_SUBSETS:
        positions = test_set.single_subsets.get(name, np.zeros(0, np.int64))
        members[name] = sorted(set(np.asarray(positions, np.int64).tolist()) & usable)
    for name in PAIR_SUBSETS:
        pairs = test_set.pair_subsets.get(name, np.zeros((0, 2), np.int64))
        pairs = sorted({(int(a), int(r)) for a, r in np.asarray(pairs).reshape(-1, 2)})
        members[name] = [(a, r) for a, r in pairs if a in usable and r in usable]
    return members


def unscorable_subsets(test_set: DreamTestSet, min_rows: int = MIN_SUBSET_ROWS) -> dict:
    """Subset name -> rows, for each subset that the score of every labelled position with
    a known sequence leaves out (fewer than `min_rows` rows, 0 = missing). Needs no
    predictions, so an incomplete score can be refused before a model is loaded."""
    members = scored_members(test_set, test_set.positions_to_predict())
    return {name: len(kept) for name, kept in members.items() if len(kept) < min_rows}


def _single_subset_result(positions, predictions, labels) -> dict:
    predicted = np.array([predictions[p] for p in positions], dtype=np.float64)
    measured = np.array([labels[p] for p in positions], dtype=np.float64)
    return _correlations(predicted, measured)


def _pair_subset_result(pairs, predictions, labels) -> dict:
    """Correlation of predicted vs measured alt-minus-ref differences over `pairs`."""
    predicted = np.array([predictions[a] - predictions[r] for a, r in pairs], np.float64)
    measured = np.array([labels[a] - labels[r] for a, r in pairs], np.float64)
    return _correlations(predicted, measured)


def _correlations(predicted: np.ndarray, measured: np.ndarray) -> dict:
    n = int(predicted.size)
    if n == 0:
        return {"n": 0, "pearson": None, "pearson_r2": None, "spearman": None,
                "status": "missing"}
    r, rho = pearson_r(predicted, measured), spearman_rho(predicted, measured)
    if math.isnan(r) or math.isnan(rho):
        return {"n": n, "pearson": None, "pearson_r2": None, "spearman": None,
                "status": "undefined"}
    return {"n": n, "pearson": r, "pearson_r2": r * r, "spearman": rho, "status": "scored"}


def _combined(subsets: dict) -> dict:
    absent = ("missing", "too_few_rows")
    present = {name: s for name, s in subsets.items() if s["status"] not in absent}
    pearson_sum = sum(s["weight"] * (s["pearson_r2"] or 0.0) for s in present.values())
    spearman_sum = sum(s["weight"] * (s["spearman"] or 0.0) for s in present.values())
    weight_sum = sum(s["weight"] for s in present.values())
    missing = [name for name, s in subsets.items() if s["status"] in absent]
    return {
        "subsets": subsets,
        "pearson_score": pearson_sum / OFFICIAL_DENOMINATOR,
        "spearman_score": spearman_sum / OFFICIAL_DENOMINATOR,
        "complete": not missing,
        "missing_subsets": missing,
        "weights": dict(SUBSET_WEIGHTS),
        "weights_used": {name: s["weight"] for name, s in present.items()},
        "official_denominator": OFFICIAL_DENOMINATOR,
        "renormalised_pearson_score": pearson_sum / weight_sum if weight_sum else None,
        "renormalised_spearman_score": spearman_sum / weight_sum if weight_sum else None,
        "all_definition": ALL_DEFINITION,
    }


def format_score_table(score: dict) -> str:
    """A plain-text table of the per-subset numbers and the weighted scores."""
    lines = [f"{'subset':<20}{'weight':>7}{'n':>7}{'pearson_r2':>12}{'spearman':>10}  status"]
    for name, s in score["subsets"].items():
        r2 = "-" if s["pearson_r2"] is None else f"{s['pearson_r2']:.4f}"
        rho = "-" if s["spearman"] is None else f"{s['spearman']:.4f}"
        lines.append(f"{name:<20}{s['weight']:>7.2f}{s['n']:>7d}{r2:>12}{rho:>10}  {s['status']}")
    lines.append(f"Pearson score  {score['pearson_score']:.4f}   "
                 f"Spearman score  {score['spearman_score']:.4f}   (official: sum / 4.65)")
    if score.get("unpredicted_positions"):
        lines.append(f"PARTIAL: {score['unpredicted_positions']} of "
                     f"{score['scorable_positions']} scorable positions not predicted")
    if score["missing_subsets"]:
        used = sum(score["weights_used"].values())
        if score.get("missing_files"):
            lines.append(f"missing files: {', '.join(score['missing_files'])}")
        lines.append(f"PARTIAL: missing {', '.join(score['missing_subsets'])} (counted as 0); "
                     f"renormalised over weights {used:.2f}: Pearson "
                     f"{_fmt(score['renormalised_pearson_score'])}, Spearman "
                     f"{_fmt(score['renormalised_spearman_score'])}")
    lines += [f"WARNING: {warning}" for warning in score.get("warnings", [])]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


# ---- reading the challenge layout -------------------------------------------------------

def load_dream_test_set(dream_dir, labels_path=None) -> DreamTestSet:
    """Read `dream_dir/test_subsets/*.csv` and the labels.

    labels_path: a JSON {"<pos>": value} (e.g. ground.json); subset membership then comes
    from the CSVs. Without it, labels and membership come from the per-subset JSONs in
    `dream_dir/public_leaderboard/` (pair keys "<alt_pos>,<ref_pos>" -> [alt, ref]).
    """
    subsets_dir = os.path.join(dream_dir, "test_subsets")
    if not os.path.isdir(subsets_dir):
        raise MissingDataError(f"{subsets_dir}: no test_subsets directory in `dream_dir`")
    sequences, csv_singles, csv_pairs, missing = {}, {}, {}, []
    for name, (csv_stem, _) in SUBSET_FILES.items():
        path = os.path.join(subsets_dir, csv_stem + ".csv")
        if os.path.lexists(path):
            members = _read_subset_csv(path, sequences, pairs=name in PAIR_SUBSETS)
            (csv_pairs if name in PAIR_SUBSETS else csv_singles)[name] = members
        else:
            missing.append(path)
    if labels_path is not None:
        return DreamTestSet(sequences, _read_label_json(labels_path), csv_singles, csv_pairs,
                            missing)
    labels, singles, pairs, missing_json = _read_leaderboard(
        os.path.join(dream_dir, "public_leaderboard"))
    return DreamTestSet(sequences, labels, singles, pairs, missing + missing_json)


def _read_subset_csv(path, sequences: dict, pairs: bool) -> np.ndarray:
    """Members of one subset CSV ([n], or [n, 2] for a subset scored as `pairs`); records
    each position's sequence. The columns must be the subset's kind: a pair subset read
    from pos/sequence columns would pair consecutive rows silently."""
    check_input_file(path, "subset CSV")
    try:
        with reading(path):
            header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, None, "the subset CSV is empty (expected a header "
                                          "and rows)") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataFormatError(path, None, f"not a CSV file ({error})") from None
    if pairs and {"alt_pos", "ref_pos", "alt_sequence", "ref_sequence"} <= set(header):
        columns = [("alt_pos", "alt_sequence"), ("ref_pos", "ref_sequence")]
    elif not pairs and {"pos", "sequence"} <= set(header):
        columns = [("pos", "sequence")]
    else:
        expected = "alt_pos, ref_pos, alt_sequence, ref_sequence (a subset scored as " \
            "variant pairs)" if pairs else "pos, sequence (a subset scored per sequence)"
        raise DataFormatError(path, 1, f"expected columns {expected}; found "
                                       f"{', '.join(map(str, header))}")
    try:
        with reading(path):
            frame = pd.read_csv(path, usecols=[c for pair in columns for c in pair],
                                dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataFormatError(path, None, f"not a CSV file ({error})") from None
    if frame.empty:
        raise DataFormatError(path, None, "the subset CSV has a header but no rows")
    positions = np.zeros((len(frame), len(columns)), np.int64)
    for index, (position_column, sequence_column) in enumerate(columns):
        for line, (pos, seq) in enumerate(zip(frame[position_column], frame[sequence_column]),
                                          start=2):
            pos, seq = pos.strip(), seq.strip()
            if not pos or not seq:
                raise DataFormatError(path, line, "missing position or sequence")
            if not _INTEGER.fullmatch(pos):
                raise DataFormatError(path, line, f"{position_column} {pos!r} is not an "
                                                  "integer")
            bad = _NOT_A_BASE.search(seq)
            if bad:
                raise DataFormatError(path, line, f"letter {bad.group(0)!r} outside ACGTN in "
                                                  f"{sequence_column}")
            positions[line - 2, index] = int(float(pos))
            if sequences.setdefault(int(float(pos)), seq) != seq:
                raise DataFormatError(path, line, f"position {int(float(pos))} has two "
                                                  "different sequences in test_subsets")
    return positions[:, 0] if len(columns) == 1 else positions


def _read_json(path, what: str):
    """Parsed JSON of a label file, or a one-line error naming file and line."""
    check_input_file(path, what)
    with reading(path), open(path, encoding="utf-8-sig") as handle:
        try:
            return json.load(handle, parse_constant=_no_constant,
                             object_pairs_hook=_no_conflicting_keys)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, error.lineno, f"invalid JSON: {error.msg} "
                                                      f"(column {error.colno})") from None
        except ValueError as error:
            raise DataFormatError(path, None, f"invalid JSON: {error}") from None


def _no_conflicting_keys(pairs) -> dict:
    """A JSON object whose repeated keys agree (json.load would keep the last silently)."""
    result = {}
    for key, value in pairs:
        if key in result and result[key] != value:
            raise ValueError(f"key {key!r} appears twice with different values "
                             f"({result[key]!r} and {value!r})")
        result[key] = value
    return result


def _no_constant(name):
    raise ValueError(f"{name} is not a label (labels must be finite numbers)")


def _label_value(path, key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise DataFormatError(path, None, f"label of {key!r} is {value!r}, not a finite "
                                          "number")
    return float(value)


def _position(path, key) -> int:
    if not _INTEGER.fullmatch(str(key).strip()):
        raise DataFormatError(path, None, f"key {key!r} is not a position (an integer)")
    return int(float(key))


def _read_label_json(path) -> dict:
    if not os.path.lexists(path):
        raise MissingDataError(f"{path}: labels file not found")
    raw = _read_json(path, "labels JSON")
    if not isinstance(raw, dict):
        raise DataFormatError(path, None, 'expected a JSON object {"<pos>": value}, found '
                                          f"{type(raw).__name__}")
    labels, keys = {}, {}
    for key, value in raw.items():
        position, label = _position(path, key), _label_value(path, key, value)
        if labels.setdefault(position, label) != label:
            raise DataFormatError(path, None, f"position {position} has two labels: "
                                              f"{keys[position]!r}: {labels[position]} and "
                                              f"{key!r}: {label}")
        keys.setdefault(position, key)
    return labels


def _read_leaderboard(directory):
    labels, singles, pairs, missing = {}, {}, {}, []
    for name, (_, json_stem) in SUBSET_FILES.items():
        path = os.path.join(directory, json_stem + ".json")
        if not os.path.lexists(path):
            missing.append(path)
            continue
        raw = _read_json(path, "leaderboard labels")
        if not isinstance(raw, dict):
            raise DataFormatError(path, None, "expected a JSON object of labels, found "
                                              f"{type(raw).__name__}")
        if name in PAIR_SUBSETS:
            pairs[name] = _leaderboard_pairs(path, raw, labels)
        else:
            singles[name] = np.array([_position(path, pos) for pos in raw], dtype=np.int64)
            for pos, value in raw.items():
                _add_label(labels, _position(path, pos), _label_value(path, pos, value), path)
    if len(missing) == len(SUBSET_FILES):
        raise MissingDataError(f"{directory}: no *_exp_indices.json labels; pass "
                                "`labels_path` (a JSON {\"<pos>\": value})")
    return labels, singles, pairs, missing


def _leaderboard_pairs(path, raw: dict, labels: dict) -> np.ndarray:
    members = []
    for key, values in raw.items():
        try:
            alt, ref = (int(part) for part in key.split(","))
            alt_value, ref_value = values
        except (ValueError, TypeError):
            raise DataFormatError(path, None, f'pair entry {key!r} is not "alt,ref": '
                                              "[alt, ref]") from None
        _add_label(labels, alt, _label_value(path, key, alt_value), path)
        _add_label(labels, ref, _label_value(path, key, ref_value), path)
        members.append((alt, ref))
    return np.array(members, dtype=np.int64).reshape(-1, 2)


def _add_label(labels: dict, position: int, value, path) -> None:
    value = float(value)
    if not math.isclose(labels.setdefault(position, value), value, rel_tol=0, abs_tol=1e-9):
        raise DataFormatError(path, None, f"position {position} has two different labels")
