"""train.py, stopping before one pre-training batch to show where its training-mode forward
pass explodes: the largest activation after each layer in training mode (BatchNorm on the
batch's own statistics) and in inference mode, and the BiLSTM's hidden-state growth along
the sequence, recomputed in NumPy from its weights.

    python experiments/small_data/explosion_probe.py [train.py flags...] --probe_step=146

--probe_step is a batch of the run's FIRST pre-training epoch, counted from 1 (as
batch_losses.py prints them; to probe a later epoch, shorten the epochs so that the batch
falls in the first). The
generated batch is rebuilt as the run builds it (a pure function of seed and step).

What it showed (docs/small_data.md, "Bounding the swish LSTM's recurrence"): ordinary
inputs to the BiLSTM, and a forward cell state growing by ~1.4 per base with saturated
gates, tamed on that batch by scaling the recurrent kernel down to 0.75 or less. It also
prints the sequence with the largest training-mode output and its longest one-letter run
(there: an ordinary sequence, longest run the flank's 7 T).
"""
# First: imports TensorFlow quietly and defines train.py's flags.
from dream_keras.cli import train as train_command

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from dream_keras.cli import runner  # noqa: E402
from dream_keras.cli.training_flags import config_from_flags  # noqa: E402
from dream_keras.data.design import infer_design  # noqa: E402
from dream_keras.data.sequences import decode, one_hot  # noqa: E402
from dream_keras.data.training_data import load_training_rows  # noqa: E402
from dream_keras.model import MODEL_DEFAULTS  # noqa: E402
from dream_keras.phases import (choose_generator, pretraining_codes,  # noqa: E402
                                pretraining_generator)
from dream_keras.teachers import RidgeTeacher  # noqa: E402
from dream_keras.training import train  # noqa: E402

_PROBE_STEP = flags.DEFINE_integer("probe_step", 146, "Batch of the first pre-training epoch "
                                   "to probe (from 1).", lower_bound=1)
_SCAN = flags.DEFINE_integer("scan_batches", 40, "Further generated batches to forward in "
                             "training mode with the same weights.", lower_bound=0)


class ProbeError(Exception):
    """Raised to end the run once the probe has printed."""


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _swish(x):
    return x * _sigmoid(x)


def lstm_growth(layer, inputs, go_backwards=False, recurrent_scale=1.0, gates=None):
    """max |h_t| and max |c_t| over the batch at each time step (NumPy, float64), with the
    recurrent kernel scaled by `recurrent_scale`; `gates` (a list) receives the mean
    forget, input and output gate of the sequence with the largest final |c| over the
    last 30 steps."""
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    recurrent = recurrent * recurrent_scale
    x = np.asarray(inputs, np.float64)[:, ::-1] if go_backwards else np.asarray(inputs, np.float64)
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    hs, cs, trace = [], [], []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        with np.errstate(over="ignore", invalid="ignore"):
            c = _sigmoid(f) * c + _sigmoid(i) * _swish(g)
            h = _sigmoid(o) * _swish(c)
        trace.append((_sigmoid(f), _sigmoid(i), _sigmoid(o)))
        hs.append(np.nanmax(np.abs(h)))
        cs.append(np.nanmax(np.abs(c)))
    if gates is not None:
        worst = int(np.nanargmax(np.abs(c).max(axis=1)))
        gates.extend(float(np.mean([step[k][worst] for step in trace[-30:]])) for k in range(3))
    return np.array(hs), np.array(cs)


def longest_run(sequence: str) -> tuple:
    """(letter, length) of the longest run of one letter in `sequence`."""
    best, length, previous = ("", 0), 0, None
    for base in sequence:
        length = length + 1 if base == previous else 1
        previous = base
        if length > best[1]:
            best = (base, length)
    return best


def layer_maxima(model, x, training):
    out, maxima = x, []
    for layer in model.layers[1:]:
        out = layer(out, training=training)
        maxima.append((layer.name, float(np.max(np.abs(keras.ops.convert_to_numpy(out))))))
    return maxima


class Probe(keras.callbacks.Callback):
    def __init__(self, config):
        super().__init__()
        rows = load_training_rows(config, {**MODEL_DEFAULTS, **config.model}["seq_len"])
        design, kind = infer_design(rows.train_codes), config.pretrain_generator
        if kind == "auto":  # the run's own choice (phases.choose_generator)
            ridge = RidgeTeacher.fit(rows.train_codes, rows.train_targets)
            kind = choose_generator(config, design, rows.train_codes, ridge)["generator"]
        self.generator = pretraining_generator(config, design, rows.train_codes, kind)
        self.config = config

    def _batch(self, step):
        return one_hot(pretraining_codes(self.generator, self.config, step))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch != 0 or batch != _PROBE_STEP.value - 1:
            return
        x = self._batch(batch)
        out = np.abs(keras.ops.convert_to_numpy(self.model(x, training=True))).reshape(-1)
        codes = pretraining_codes(self.generator, self.config, batch)
        runs = [longest_run(sequence) for sequence in decode(codes)]
        worst = int(np.nanargmax(out))
        print(f"largest |output| {out[worst]:.3g} for sequence {worst} of the batch: "
              f"{decode(codes[worst:worst + 1])[0]} (longest one-letter run "
              f"{runs[worst][1]} x {runs[worst][0]}); the batch's longest runs: median "
              f"{np.median([r[1] for r in runs]):.0f}, max {max(r[1] for r in runs)}; "
              f"sequences with |output| > 100: {int(np.sum(out > 100))}")
        for training in (True, False):
            print(f"training={training}: " + ", ".join(
                f"{name} {value:.3g}" for name, value in layer_maxima(self.model, x, training)))
        # The BiLSTM's input and the growth of its state along the sequence.
        lstm_input = x
        for layer in self.model.layers[1:]:
            if layer.name == "bilstm":
                break
            lstm_input = keras.ops.convert_to_numpy(layer(lstm_input, training=True))
        for direction, cell in (("forward", self.model.get_layer("bilstm").forward_layer),
                                ("backward", self.model.get_layer("bilstm").backward_layer)):
            gates = []
            h, c = lstm_growth(cell, lstm_input, direction == "backward", gates=gates)
            steps = [0, 9, 19, 39, 59, 79, 99, len(h) - 1]
            print(f"{direction} LSTM max|h| at steps {[s + 1 for s in steps]}: "
                  f"{[float(f'{h[s]:.3g}') for s in steps]}; max|c|: "
                  f"{[float(f'{c[s]:.3g}') for s in steps]}")
            print(f"{direction} worst sequence, last 30 steps: mean forget {gates[0]:.3f}, "
                  f"input {gates[1]:.3f}, output {gates[2]:.3f} gate")
            for scale in (0.75, 0.5, 0.25, 0.0):
                h, c = lstm_growth(cell, lstm_input, direction == "backward", scale)
                print(f"{direction}, recurrent kernel x {scale}: final max|c| {c[-1]:.3g}, "
                      f"largest max|c| {np.nanmax(c):.3g}")
            kernel, recurrent, _ = cell.get_weights()
            print(f"{direction} kernel norm {np.linalg.norm(kernel):.3g}, recurrent spectral "
                  f"norm {np.linalg.norm(recurrent, 2):.3g}")
        print(f"LSTM input max {np.max(np.abs(lstm_input)):.3g}, rms "
              f"{np.sqrt(np.mean(lstm_input ** 2)):.3g}")
        exploded = []
        for step in range(batch, batch + _SCAN.value):
            out = keras.ops.convert_to_numpy(self.model(self._batch(step), training=True))
            exploded.append(float(np.max(np.abs(out))))
        print(f"max |output| in training mode, batches {batch + 1}-{batch + _SCAN.value}: "
              f"{[float(f'{v:.3g}') for v in exploded]}")
        raise ProbeError


def probe() -> str:
    config = config_from_flags()
    train_command.check_training_paths(config)
    try:
        train(config, extra_callbacks=[Probe(config)])
    except ProbeError:
        return "probed"
    return "the probe step was not reached"


if __name__ == "__main__":
    runner.run(probe)
