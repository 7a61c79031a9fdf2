"""Rebuild tests/data/dream2022 from a full copy of the public DREAM 2022 samples.

    python tests/data/make_slices.py --dream_dir=PATH/dream2022 [--output=tests/data/dream2022]

PATH/dream2022 holds train_sample/, test_subsets/ and public_leaderboard/ as published by
the challenge organisers (see tests/data/README.md). The slices keep what the tests need
within ~1 MB: the first TRAIN_ROWS training rows, every labelled test row whose sequence is
public, and the labels of those rows. Deterministic: the same input gives the same bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import pandas as pd

TRAIN_ROWS = 3000
SNV_PAIRS_KEPT = 25  # labels whose sequences are not public: the score reports them missing


def _slice_train(source_dir, output_dir):
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(source_dir, "de_boer_demo_train.txt")) as handle:
        lines = handle.read().splitlines()[:TRAIN_ROWS]
    # No newline after the last row, like the original file: a case the reader must handle.
    with open(os.path.join(output_dir, "de_boer_demo_train.head3000.txt"), "w") as handle:
        handle.write("\n".join(lines))
    shutil.copyfile(os.path.join(source_dir, "camformer_demo_test.txt"),
                    os.path.join(output_dir, "camformer_demo_test.txt"))


def _load_json(path):
    with open(path) as handle:
        return json.load(handle)


def _write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, sort_keys=True)


def _slice_leaderboard(source_dir, output_dir):
    board_in = os.path.join(source_dir, "public_leaderboard")
    board_out = os.path.join(output_dir, "public_leaderboard")
    subsets_out = os.path.join(output_dir, "test_subsets")
    os.makedirs(board_out, exist_ok=True)
    os.makedirs(subsets_out, exist_ok=True)
    labelled = {}
    for name in sorted(os.listdir(board_in)):
        if name.endswith("_exp_indices.json"):
            labelled[name] = _load_json(os.path.join(board_in, name))
    single_keys = {k for v in labelled.values() for k in v if "," not in k}
    pair_keys = {k for v in labelled.values() for k in v if "," in k}
    known = set()
    for name in sorted(os.listdir(os.path.join(source_dir, "test_subsets"))):
        frame = pd.read_csv(os.path.join(source_dir, "test_subsets", name), index_col=0)
        if "pos" in frame.columns:
            keep = frame["pos"].astype(str).isin(single_keys)
            known |= set(frame.loc[keep, "pos"].astype(str))
        else:
            keys = frame["alt_pos"].astype(str) + "," + frame["ref_pos"].astype(str)
            keep = keys.isin(pair_keys)
            known |= set(keys[keep])
            known |= set(frame.loc[keep, "alt_pos"].astype(str))
            known |= set(frame.loc[keep, "ref_pos"].astype(str))
        frame[keep].to_csv(os.path.join(subsets_out, name))
    for name, labels in labelled.items():
        if name.startswith("SNVs"):
            kept = dict(sorted(labels.items())[:SNV_PAIRS_KEPT])
        else:
            kept = {k: v for k, v in labels.items() if k in known}
        _write_json(os.path.join(board_out, name), kept)
    ground = _load_json(os.path.join(board_in, "ground.json"))
    _write_json(os.path.join(board_out, "ground.json"),
                {k: v for k, v in ground.items() if k in known})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dream_dir", required=True, help="the full public samples")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "dream2022"))
    args = parser.parse_args()
    _slice_train(os.path.join(args.dream_dir, "train_sample"),
                 os.path.join(args.output, "train_sample"))
    _slice_leaderboard(args.dream_dir, args.output)


if __name__ == "__main__":
    main()
