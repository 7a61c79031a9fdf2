"""How much the ridge teacher's labels vary on each pre-training generator's sequences,
relative to the training rows themselves (issue 16: why the `design` generator teaches
the synthetic data's planted motifs poorly, and `mutate` teaches them well).

    python experiments/small_data/teacher_spread.py --train_data=TRAIN.txt [--seed=0]
        [--sequences=20000] [--mutation_rate=0.1]

Loads and splits TRAIN.txt as train.py does (singletons kept, 10 % validation, --seed),
fits the ridge teacher on the training rows only, draws --sequences sequences from each
generator, and prints the standard deviation of the teacher's labels on each, divided by
its standard deviation on the training rows, and what --pretrain_generator=auto chooses
(phases.choose_generator, the same ratio on its own draw). Reads no label beyond the
training rows'.
"""
from __future__ import annotations

import numpy as np
from absl import app, flags

from dream_keras.data.design import GENERATORS, SequenceGenerator, infer_design
from dream_keras.data.sequences import DEFAULT_SEQ_LEN
from dream_keras.data.training_data import load_training_rows
from dream_keras.phases import choose_generator
from dream_keras.teachers import RidgeTeacher
from dream_keras.training_config import TrainingConfig

_TRAIN = flags.DEFINE_string("train_data", None, "Training file (DREAM format).",
                             required=True)
_SEED = flags.DEFINE_integer("seed", 0, "The run's seed (split and draws).")
_SEQUENCES = flags.DEFINE_integer("sequences", 20_000, "Sequences drawn per generator.")
_RATE = flags.DEFINE_float("mutation_rate", 0.1, "Per-base rate of the mutate generator.")


def main(argv):
    del argv
    config = TrainingConfig(train_data=_TRAIN.value, output_dir="", seed=_SEED.value,
                            singleton_keep_prob=1.0, validation_fraction=0.1)
    rows = load_training_rows(config, DEFAULT_SEQ_LEN)
    teacher = RidgeTeacher.fit(rows.train_codes, rows.train_targets)
    on_rows = float(np.std(teacher.labels(rows.train_codes)))
    design = infer_design(rows.train_codes)
    print(f"{_TRAIN.value}: {len(rows.train_codes)} training rows; teacher label std on "
          f"them {on_rows:.3f} (standardised targets: 1)")
    for kind in GENERATORS:
        generator = SequenceGenerator(design, kind, rows.train_codes, _RATE.value)
        codes = generator.batch(_SEED.value, 99, 0, _SEQUENCES.value)
        spread = float(np.std(teacher.labels(codes)))
        print(f"  {kind:7s} std {spread:.3f}  ratio to training rows {spread / on_rows:.3f}")
    choice = choose_generator(config, design, rows.train_codes, teacher)
    print(f"  --pretrain_generator=auto: {choice['generator']} (design's ratio on its own "
          f"draw: {choice['design_label_spread']:.3f}; design from {choice['design_from']})")


if __name__ == "__main__":
    app.run(main)
