"""Run many command lines of ONE command in one process, as the real command would run.

    python tests/cli_batch.py CASES.json RESULTS.json

CASES.json: {"module": "dream_keras.cli.predict", "program": "predict.py",
"cases": [[arg, ...], ...]}. Each case sets sys.argv and calls the module's real `main()`
(absl parses it, runner.run maps errors), after resetting every flag to its default. An
exception escaping `main()` is printed as the interpreter would print it (a traceback),
and its exit status is 1. RESULTS.json: one {"code", "stdout", "stderr"} per case.

TensorFlow is imported once for the whole batch, which is what keeps the fuzz tests fast;
test_fuzz_cli.py also runs some cases as separate processes to show they read the same.
"""
import contextlib
import importlib
import io
import json
import sys
import traceback


def run_case(module, program: str, arguments: list) -> dict:
    from absl import flags

    flags.FLAGS.unparse_flags()
    sys.argv = [program, *arguments]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
            code = 0 if code is None else int(code)
        except BaseException:  # noqa: BLE001  (what the interpreter would print)
            traceback.print_exc()
            code = 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    cases_path, results_path = sys.argv[1:3]
    with open(cases_path) as handle:
        spec = json.load(handle)
    module = importlib.import_module(spec["module"])
    results = [run_case(module, spec["program"], arguments) for arguments in spec["cases"]]
    with open(results_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
