"""Benchmark scoring through predict.py's path against the bare XLA forward pass.

Why: users score the challenge's 71,103 test sequences (and millions of variants) with
`predict.py`. This times exactly what predict.py runs (cli.commands.run_prediction: load the
run, compile, read, encode, predict, inverse-scale, write the TSV) and, in the same
process, the bare forward pass: the same compiled function called back to back on uint8
batches already in memory, measured before and after the file run (their mean is the
denominator; both are printed). Their ratio is the share of the model's speed the path
keeps. The 71,103-sequence time is fixed cost (load, compile) + 71,103 x per-row time,
both fitted to the file run and a one-batch run of the same path (`challenge_seconds`), so
a shorter run does not multiply the fixed cost. Also: strand averaging's cost, the forward
FLOP/s against a same-run 4096^2 matmul, and optionally a batch-size sweep and bfloat16
scoring. The model is the full architecture with fresh weights (speed does not depend on
training; the bfloat16 difference is measured on a model whose attention and LSTM weights
are randomised so it is not near-constant).

    python benchmarks/predict_bench.py                     # 71,103 synthetic sequences
    python benchmarks/predict_bench.py --rows=20000        # shorter; 71,103 figure fitted
    python benchmarks/predict_bench.py --input=test.csv    # any predict.py input file
    python benchmarks/predict_bench.py --batch_sweep --bfloat16 --cli
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

CHALLENGE_TEST_ROWS = 71_103
SWEEP_BATCHES = (64, 128, 256, 512, 1024)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_fresh_run(run_dir: str) -> str:
    """A run directory (model.keras + target_scaler.json) holding the faithful model."""
    from dream_keras.data.splits import TargetScaler
    from dream_keras.model import build_model
    from dream_keras.run_directory import MODEL_FILE, SCALER_FILE

    os.makedirs(run_dir, exist_ok=True)
    model_path = os.path.join(run_dir, MODEL_FILE)
    build_model().save(model_path)
    TargetScaler(mean=11.0, std=2.5).save(os.path.join(run_dir, SCALER_FILE))
    return model_path


def _random_codes(rows: int, seq_len: int, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 4, size=(rows, seq_len)).astype(np.uint8)


def bare_forward_sequences_per_second(model, batch_size: int, batches: int = 8,
                                      both_strands: bool = False,
                                      clock=time.perf_counter) -> float:
    """Sustained seq/s of the compiled forward called on `batches` in-memory batches back to
    back (after one untimed call that compiles): the model's own speed. With
    clock=time.process_time: sequences per CPU-second of this process."""
    from dream_keras.inference import compiled_forward, model_seq_len

    forward = compiled_forward(model, batch_size, both_strands=both_strands)
    inputs = [_random_codes(batch_size, model_seq_len(model), seed)
              for seed in range(2 if both_strands else 1)]
    forward(*inputs).numpy()
    started = clock()
    for _ in range(batches):
        forward(*inputs).numpy()
    return batches * batch_size / (clock() - started)


def forward_and_matmul_rates(model, batch_size: int, rounds: int = 3,
                             clock=time.perf_counter) -> tuple[float, float]:
    """(forward seq/s, matmul FLOP/s): each the best of `rounds` measurements taken
    alternately, so both see the same machine state (it is shared and its load swings)."""
    from train_bench import matmul_flops_per_second

    forward, matmul = 0.0, 0.0
    for _ in range(rounds):
        matmul = max(matmul, matmul_flops_per_second(repeats=2, clock=clock))
        forward = max(forward, bare_forward_sequences_per_second(model, batch_size, 4,
                                                                 clock=clock))
    return forward, matmul


def _count_rows(path: str) -> int:
    from dream_keras.data.readers import iter_sequence_chunks

    return sum(len(chunk.sequences) for chunk in iter_sequence_chunks(path))


def _timed_prediction(model_path, input_path, output_path, batch_size, **options
                      ) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one run_prediction."""
    from dream_keras.cli.commands import run_prediction

    started, cpu_started = time.perf_counter(), time.process_time()
    run_prediction(model_path, input_path=input_path, output_path=output_path,
                   batch_size=batch_size, overwrite=True, **options)
    return time.perf_counter() - started, time.process_time() - cpu_started


class TooFewRows(ValueError):
    """The input is too short to tell the fixed cost from the per-row time."""


def challenge_seconds(rows: int, seconds: float, small_rows: int, small_seconds: float,
                      target_rows: int = CHALLENGE_TEST_ROWS) -> tuple[float, float, float]:
    """(seconds for target_rows, fixed seconds, seconds per row) from two run_prediction
    timings, `rows` and `small_rows`, fitted as fixed + rows x per-row.

    Why: a run pays a fixed cost (model load, XLA compile) once; scaling the whole time of
    a shorter run by target_rows / rows would multiply that cost too. The fixed cost is
    kept within [0, seconds] (timing noise on tiny inputs), so at rows == target_rows the
    figure is the measured time.
    """
    per_row = (seconds - small_seconds) / (rows - small_rows)
    fixed = min(max(small_seconds - small_rows * per_row, 0.0), seconds)
    per_row = (seconds - fixed) / rows
    return fixed + target_rows * per_row, fixed, per_row


def _cli_seconds(model_path, input_path, output_path, batch_size) -> float:
    """Wall time of `python predict.py ...` in a fresh process (imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), f"--model={model_path}",
                    f"--input={input_path}", f"--output={output_path}",
                    f"--batch_size={batch_size}", "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _bfloat16_figures(model_path, input_path, rows, batch_size) -> list:
    """Speed and largest difference of mixed_bfloat16 scoring against float32."""
    import keras
    import numpy as np

    from dream_keras.data.readers import iter_sequence_chunks
    from dream_keras.data.sequences import encode
    from dream_keras.inference import predict_codes
    from dream_keras.model import MODEL_DEFAULTS, build_model, load_model

    model = load_model(model_path)
    rng = np.random.default_rng(3)
    for layer_name in ("transformer_0", "transformer_1"):
        # A fresh attention's output kernel is zero (it would add nothing): randomise the
        # attention weights so the bfloat16 attention counts. The swish LSTM keeps its
        # initialisation (random LSTM weights make the untrained outputs explode).
        attention = model.get_layer(layer_name).attention
        attention.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.1
                               for w in attention.get_weights()])
    low = build_model(dtype="mixed_bfloat16", **{k: v for k, v in MODEL_DEFAULTS.items()})
    low.set_weights(model.get_weights())
    codes = np.concatenate([encode(chunk.sequences, 110)
                            for chunk in iter_sequence_chunks(input_path)])
    full = predict_codes(model, codes, batch_size)
    half = predict_codes(low, codes, batch_size)
    # Per CPU-second, alternated twice: a shared machine's load swings between calls.
    low_rate, high_rate = 0.0, 0.0
    for _ in range(2):
        low_rate = max(low_rate, bare_forward_sequences_per_second(
            low, batch_size, clock=time.process_time))
        high_rate = max(high_rate, bare_forward_sequences_per_second(
            model, batch_size, clock=time.process_time))
    keras.backend.clear_session()
    return [
        report(Figure("predict_bfloat16_speedup", low_rate / high_rate, "x",
                      f"bare XLA forward seq per CPU-second, mixed_bfloat16 / float32, batch "
                      f"{batch_size}")),
        report(Figure("predict_bfloat16_max_abs_difference", float(np.abs(full - half).max()),
                      "std units", f"largest |bfloat16 - float32| prediction over {rows:,} "
                      f"sequences (standardised scale; this model's outputs have std "
                      f"{full.std():.3g}, a trained model's ~1)")),
        report(Figure("predict_bfloat16_max_difference_over_output_std",
                      float(np.abs(full - half).max() / full.std()), "",
                      "largest |bfloat16 - float32| / std of the float32 predictions")),
    ]


def run(rows: int, bench_dir: str, *, input_path: str | None = None, batch_size=None,
        batch_sweep: bool = False, bfloat16: bool = False, cli: bool = False) -> list:
    import keras

    from dream_keras import flops
    from dream_keras.inference import DEFAULT_BATCH_SIZE, load_run

    batch_size = batch_size or DEFAULT_BATCH_SIZE
    figures = []
    if input_path is not None:
        rows = _count_rows(input_path)
    # The fixed cost's run: one full batch (the same compiled shape as the main run).
    small_rows = batch_size
    if rows <= small_rows:
        raise TooFewRows(f"{rows:,} rows: need more than one batch ({batch_size}) to "
                         "separate the fixed cost (load, compile) from the per-row time")
    if input_path is None:
        input_path = cached_dream_file(bench_dir, rows, seed=1)
    small_input = cached_dream_file(bench_dir, small_rows, seed=1)
    model_path = save_fresh_run(os.path.join(bench_dir, "predict_bench_run"))
    output_path = os.path.join(bench_dir, "predict_bench_predictions.tsv")
    model, _ = load_run(model_path)

    bare_before = bare_forward_sequences_per_second(model, batch_size)
    cpu_bare = bare_forward_sequences_per_second(model, batch_size, clock=time.process_time)
    seconds, cpu_seconds = _timed_prediction(model_path, input_path, output_path, batch_size)
    small_seconds, _ = _timed_prediction(model_path, small_input, output_path, batch_size)
    test_seconds, fixed_seconds, row_seconds = challenge_seconds(rows, seconds, small_rows,
                                                                 small_seconds)
    bare_after = bare_forward_sequences_per_second(model, batch_size)
    cpu_bare = max(cpu_bare, bare_forward_sequences_per_second(model, batch_size,
                                                               clock=time.process_time))
    rc_seconds, rc_cpu_seconds = _timed_prediction(
        model_path, input_path, output_path, batch_size, reverse_complement_average=True)
    bare = (bare_before + bare_after) / 2
    file_rate = rows / seconds
    # Strand averaging's compute cost, bare: one both-strand call against one plain call
    # per batch of sequences, alternated.
    plain_rate = bare_forward_sequences_per_second(model, batch_size)
    both_rate = bare_forward_sequences_per_second(model, batch_size, both_strands=True)
    plain_rate = max(plain_rate, bare_forward_sequences_per_second(model, batch_size))
    forward_rate, peak = forward_and_matmul_rates(model, batch_size)
    forward_fraction = forward_rate * flops.forward_flops_per_sample(model) / peak
    cpu_rate, cpu_peak = forward_and_matmul_rates(model, batch_size, clock=time.process_time)
    cpu_fraction = cpu_rate * flops.forward_flops_per_sample(model) / cpu_peak

    figures.append(report(Figure(
        "predict_bare_xla_sequences_per_second", bare, "seq/s",
        f"compiled forward, uint8 batches in memory, batch {batch_size} (mean of "
        f"{bare_before:,.0f} before and {bare_after:,.0f} after the file run)")))
    figures.append(report(Figure(
        "predict_file_sequences_per_second", file_rate, "seq/s",
        f"cli.commands.run_prediction (predict.py's path: load, compile, read, predict, "
        f"write TSV), {rows:,} rows, batch {batch_size}")))
    figures.append(report(Figure(
        "predict_file_fraction_of_bare_xla", file_rate / bare, "",
        "predict.py path seq/s / bare XLA forward seq/s (1 = no overhead)", ">= 0.9")))
    figures.append(report(Figure(
        "predict_file_cpu_fraction_of_bare_xla", rows / cpu_seconds / cpu_bare, "",
        "the same ratio per CPU-second of this process, all threads (robust to other jobs; "
        "on 2 saturated cores every CPU-second of reading and writing is one the model "
        "does not get)", ">= 0.9")))
    figures.append(report(Figure(
        "predict_challenge_test_seconds", test_seconds, "s",
        f"run_prediction on {CHALLENGE_TEST_ROWS:,} sequences: fixed {fixed_seconds:.1f} s "
        f"(load, compile) + {CHALLENGE_TEST_ROWS:,} x {row_seconds * 1e3:.3f} ms/row, fitted "
        f"to runs on {rows:,} and {small_rows:,} rows", "<= 35")))
    figures.append(report(Figure(
        "predict_reverse_complement_cost", rc_seconds / seconds, "x",
        "run_prediction time with --reverse_complement_average / without", "<= 2")))
    figures.append(report(Figure(
        "predict_reverse_complement_cpu_cost", rc_cpu_seconds / cpu_seconds, "x",
        "the same in CPU seconds of this process (robust to other jobs)", "<= 2")))
    figures.append(report(Figure(
        "predict_reverse_complement_bare_cost", plain_rate / both_rate, "x",
        "bare forward seq/s plain / with both strands in one call (2 = exactly twice the "
        "compute)")))
    figures.append(report(Figure("predict_matmul_fp32_gflops", peak / 1e9, "GFLOP/s",
                                 "float32 4096x4096 matmul, best of 3 rounds alternated with "
                                 "the forward")))
    figures.append(report(Figure(
        "predict_forward_flops_fraction_of_matmul", forward_fraction, "",
        f"bare forward FLOP/s ({flops.forward_flops_per_sample(model) / 1e6:.1f} "
        f"MFLOP/sample, best {forward_rate:,.0f} seq/s) / fp32 matmul FLOP/s, measured "
        "alternately", ">= 0.8")))
    figures.append(report(Figure(
        "predict_forward_flops_per_cpu_second_fraction_of_matmul", cpu_fraction, "",
        "the same ratio per CPU-second of this process (process_time: robust to other "
        "jobs on a shared machine)")))
    if cli:
        cli_seconds = _cli_seconds(model_path, input_path, output_path, batch_size)
        figures.append(report(Figure(
            "predict_cli_seconds", cli_seconds, "s",
            f"`python predict.py` wall time on {rows:,} rows, fresh process (imports, "
            "load, compile, predict, write)")))
    if batch_sweep:
        # Per CPU-second, best of two alternated rounds: wall time on a shared machine
        # swings more between batch sizes than the sizes differ.
        sweep = {size: 0.0 for size in SWEEP_BATCHES}
        for size in list(SWEEP_BATCHES) * 2:
            sweep[size] = max(sweep[size], bare_forward_sequences_per_second(
                model, size, max(2, 2048 // size), clock=time.process_time))
        reference = batch_size if batch_size in sweep else DEFAULT_BATCH_SIZE
        for size, rate in sweep.items():
            figures.append(report(Figure(
                f"predict_bare_xla_batch{size}_sequences_per_cpu_second", rate, "seq/CPU-s",
                f"bare XLA forward at batch {size}, sequences per CPU-second "
                f"({rate / sweep[reference]:.2f}x batch {reference})")))
    if bfloat16:
        figures += _bfloat16_figures(model_path, input_path, rows, batch_size)
    keras.backend.clear_session()
    report_ratio(f"predict.py's path keeps {file_rate / bare:.2f} of the bare XLA forward's "
                 f"speed ({rows / cpu_seconds / cpu_bare:.2f} per CPU-second); {CHALLENGE_TEST_ROWS:,} sequences take {test_seconds:.0f} s; "
                 f"strand averaging costs {rc_seconds / seconds:.2f}x; forward at "
                 f"{forward_fraction:.2f} of the matmul ({cpu_fraction:.2f} per CPU-second)")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=CHALLENGE_TEST_ROWS,
                        help="Synthetic sequences to score (the challenge's test set has "
                             "71,103; more than one batch). The 71,103 figure is the fixed "
                             "cost plus 71,103 x the per-row time, both fitted to this run "
                             "and a one-batch run.")
    parser.add_argument("--input", default=None,
                        help="Score this file instead (any predict.py input, e.g. the "
                             "challenge's test sequences); --rows is then its row count.")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Prediction batch (default: inference.DEFAULT_BATCH_SIZE).")
    parser.add_argument("--batch_sweep", action="store_true",
                        help="Also time the bare forward at batches 64..1024.")
    parser.add_argument("--bfloat16", action="store_true",
                        help="Also measure mixed_bfloat16 scoring: speed and largest "
                             "difference against float32 over the rows.")
    parser.add_argument("--cli", action="store_true",
                        help="Also time `python predict.py` in a fresh process.")
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR,
                        help="Where the input file, run directory and TSV are written.")
    args = parser.parse_args()
    try:
        run(args.rows, args.bench_dir, input_path=args.input, batch_size=args.batch_size,
            batch_sweep=args.batch_sweep, bfloat16=args.bfloat16, cli=args.cli)
    except TooFewRows as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
