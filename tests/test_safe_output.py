"""Output rules, atomic writes (atomic_files, as the outputs use it), strict JSON, artefact
checks and the start-up log filter, without TensorFlow (the commands themselves:
test_fuzz_cli.py)."""
import gzip
import json
import os
import pathlib
import signal
import subprocess
import sys
import types

import pytest

from dream_keras.artefacts import check_model, scaler_values
from dream_keras.cli.tensorflow_logging import filter_start_up_lines, start_up_log_threshold
from dream_keras.data.readers import iter_chunks, iter_sequence_chunks
from dream_keras.errors import DataFormatError, DreamKerasError
from dream_keras import atomic_files
from dream_keras.atomic_files import replacing_open
from dream_keras.safe_output import check_output_path, write_json
from tests.conftest import REPO


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.tsv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with replacing_open(path) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["out.tsv"]


def test_writing_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    (tmp_path / "target.tsv").write_text("old\n")
    (tmp_path / "link.tsv").symlink_to(tmp_path / "target.tsv")
    with replacing_open(tmp_path / "link.tsv") as handle:
        handle.write("new\n")
    assert (tmp_path / "link.tsv").is_symlink()
    assert (tmp_path / "target.tsv").read_text() == "new\n"


def test_outputs_that_would_destroy_something_are_refused_even_with_overwrite(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("ACGT\n")
    os.link(source, tmp_path / "hard_link.txt")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_text("model")
    os.mkfifo(tmp_path / "fifo")
    refused = [
        (tmp_path / "hard_link.txt", dict(inputs=[source]), "is or holds the input"),
        (tmp_path / "run", dict(inputs=[tmp_path / "run" / "model.keras"], directory=True),
         "is or holds the input"),
        (tmp_path / "run", {}, "is a directory, not a regular file"),
        (tmp_path / "fifo", {}, "is a FIFO"),
        (source, dict(directory=True), "is a regular file, not a directory"),
    ]
    for path, options, message in refused:
        with pytest.raises(DreamKerasError, match=message):
            check_output_path(path, overwrite=True, **options)
    check_output_path(tmp_path / "new" / "dirs" / "out.tsv")  # created on write: fine


def test_json_outputs_are_strict_with_the_reason_for_each_null(tmp_path):
    write_json(tmp_path / "m.json", {"n": 1, "pearson": float("nan"),
                                     "nested": {"r2": float("inf")}})
    text = (tmp_path / "m.json").read_text()
    payload = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert payload["pearson"] is None and payload["nested"]["r2"] is None
    assert set(payload["null_reasons"]) == {"pearson", "nested.r2"}


@pytest.mark.parametrize("fields,message", [
    ({"mean": 1.0, "std": 0.0}, "std must be > 0"),
    ({"mean": 1.0, "std": -1.0}, "std must be > 0"),
    ({"mean": float("nan"), "std": 1.0}, "mean must be finite"),
    ({"mean": 1.0, "std": float("inf")}, "std must be finite"),
    ({"mean": 1.0}, "missing key"),
    ({"mean": "1", "std": 1.0}, "mean must be a number"),
    ([1.0, 2.0], "expected a JSON object"),
])
def test_bad_scaler_values_are_refused(fields, message):
    with pytest.raises(DataFormatError, match=message):
        scaler_values("s.json", fields)


def test_good_scaler_values_pass_and_extra_keys_are_ignored():
    assert scaler_values("s.json", {"mean": 11, "std": 2.5, "rows": 9}) == (11.0, 2.5)


def _fake_model(inputs, outputs):
    tensor = lambda shape: types.SimpleNamespace(shape=shape)  # noqa: E731
    return types.SimpleNamespace(inputs=[tensor(s) for s in inputs],
                                 outputs=[tensor(s) for s in outputs])


def test_model_contract():
    assert check_model(_fake_model([(None, 110, 4)], [(None, 1)]), "m") == 110
    assert check_model(_fake_model([(None, 80, 4)], [(None,)]), "m") == 80
    for inputs, outputs in [([(None, 110, 4)], [(None, 3)]), ([(None, 110, 5)], [(None, 1)]),
                            ([(None, None, 4)], [(None, 1)]),
                            ([(None, 110, 4), (None, 110, 4)], [(None, 1)]),
                            ([(None, 110, 4)], [(None, 1), (None, 1)])]:
        with pytest.raises(DataFormatError, match="not a dream_keras model: expected"):
            check_model(_fake_model(inputs, outputs), "m")


def test_truncated_gzip_names_file_and_the_last_line_read(tmp_path):
    lines = "".join(f"{'ACGT' * 20}\t{i % 17}.5\n" for i in range(5000)).encode()
    whole = gzip.compress(lines)
    (tmp_path / "t.txt.gz").write_bytes(whole[: len(whole) * 3 // 4])
    with pytest.raises(DataFormatError, match=r"t\.txt\.gz: cannot read after line \d+: "
                                              r"truncated gzip"):
        for _ in iter_chunks(tmp_path / "t.txt.gz", chunk_rows=1000):
            pass


def test_a_byte_order_mark_is_not_data_in_gzipped_or_plain_tables(tmp_path):
    (tmp_path / "s.csv.gz").write_bytes(gzip.compress("\ufeffsequence,id\nACGT,1\n".encode()))
    (tmp_path / "s.fa").write_text("\ufeff>a\nACGT\n")
    for name in ("s.csv.gz", "s.fa"):
        chunks = list(iter_sequence_chunks(tmp_path / name))
        assert chunks[0].sequences == ["ACGT"]


def test_start_up_log_filter_keeps_errors_and_python_output():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written "
            "to STDERR\n"
            "I0000 00:00:1796162673.515521    5736 port.cc:153] oneDNN custom operations\n"
            "I0000 00:00:1796162673.650688    5736 cpu_feature_guard.cc:227] This binary\n"
            "I0000 00:00:1796162673.65 5736 cudart_stub.cc:31] Could not find cuda drivers\n"
            "To enable the following instructions: AVX2, in other operations, rebuild\n"
            "E0000 00:00:1796162673.6 5736 cuda_platform.cc:52] failed call to cuInit: x\n"
            "E0000 00:00:1796162673.7 5736 other.cc:1] a real error\n"
            "/x.py:1: DeprecationWarning: something\n")
    assert filter_start_up_lines(text, 2) == ("E0000 00:00:1796162673.7 5736 other.cc:1] a "
                                              "real error\n/x.py:1: DeprecationWarning: "
                                              "something\n")
    assert filter_start_up_lines(text, 0) == text
    # A driver found (no such notice) that fails cuInit is broken or mismatched: kept.
    found = "".join(line + "\n" for line in text.splitlines() if "Could not find" not in line)
    assert "failed call to cuInit" in filter_start_up_lines(found, 2)


def test_a_symlinked_cache_output_is_written_through_and_dead_partials_go(tmp_path):
    """dream-prepare writes through a symlink as every output does (the link kept), and a
    killed writer's `.partial-<pid>.<name>` beside an output is removed by the next write
    (a live writer's is left alone)."""
    import subprocess
    import sys

    from dream_keras.data.cache import load_cache, prepare_cache

    source = tmp_path / "rows.txt"
    source.write_text("ACGT\t1.5\nGGCC\t2.5\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "cache.h5").write_text("old")
    (tmp_path / "link.h5").symlink_to(tmp_path / "real" / "cache.h5")
    prepare_cache(source, tmp_path / "link.h5", overwrite=True)
    assert (tmp_path / "link.h5").is_symlink()
    assert len(load_cache(tmp_path / "real" / "cache.h5")) == 2

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until reused)
    killed = tmp_path / f".partial-{dead.pid}.out.tsv"
    live = tmp_path / f".partial-{os.getppid()}.out.tsv"
    other = tmp_path / f".partial-{dead.pid}.other.tsv"
    for path in (killed, live, other):
        path.write_text("half")
    atomic_files.write_text(tmp_path / "out.tsv", "whole\n")
    assert not killed.exists() and live.exists() and other.exists()


def test_threshold_follows_the_environment_and_verbosity():
    assert start_up_log_threshold(["prog"], {}) == 2
    environ = {}
    start_up_log_threshold(["prog"], environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert start_up_log_threshold(["prog"], {"TF_CPP_MIN_LOG_LEVEL": "0"}) == 0
    assert start_up_log_threshold(["prog", "--verbosity=1"], {}) == 0
    assert start_up_log_threshold(["prog", "-v", "1"], {}) == 0


_FAKE_TENSORFLOW = """
import os
os.write(2, b"I0000 00:00:1.5 11 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"{last}\\n")
{end}
"""


@pytest.mark.parametrize("dies,sigchld_ignored", [(False, False), (True, False), (False, True)])
def test_the_quiet_import_filters_start_up_lines_and_keeps_a_fatal_one(tmp_path, dies,
                                                                       sigchld_ignored):
    """A stand-in `tensorflow` package logs like TensorFlow's start-up, then either imports
    or aborts inside the import as a LOG(FATAL) does: the fatal line reaches stderr. A
    caller that ignores SIGCHLD (inherited from some launchers) imports all the same."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    last = ("F0000 00:00:1.5 11 cpu_feature_guard.cc:42] The TensorFlow library was compiled "
            "to use AVX instructions, but these are not available on this machine."
            if dies else "E0000 00:00:1.5 11 some.cc:7] an error worth showing")
    end = "os.abort()" if dies else "class config:\n    list_physical_devices = list"
    (fake / "__init__.py").write_text(_FAKE_TENSORFLOW.format(last=last, end=end))
    code = ("import sys\nfrom dream_keras.cli.tensorflow_logging import "
            "import_tensorflow_quietly\nimport_tensorflow_quietly()\n"
            "sys.stderr.write('after the import\\n')\n")
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=60, preexec_fn=lambda: signal.signal(
                                signal.SIGCHLD, signal.SIG_IGN) if sigchld_ignored else None)
    assert result.returncode == (-signal.SIGABRT if dies else 0), result.stderr
    assert result.stderr.splitlines()[:2] == [last] + ([] if dies else ["after the import"])
    assert "oneDNN" not in result.stderr


def test_a_process_the_import_leaves_running_does_not_hold_it_up(tmp_path):
    """A stand-in `tensorflow` starts a process that outlives the import and inherits its
    fd 2 (the pipe): the import still returns at once, its lines filtered and shown."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os, subprocess\n"
        "os.write(2, b'I0000 00:00:1.5 11 port.cc:153] oneDNN custom operations are on.\\n')\n"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(subprocess.Popen(['sleep', '60']).pid))\n"
        "os.write(2, b'E0000 00:00:1.5 11 some.cc:7] an error worth showing\\n')\n"
        "class config:\n    list_physical_devices = list\n")
    code = ("import sys, time\nfrom dream_keras.cli.tensorflow_logging import "
            "import_tensorflow_quietly\nstart = time.monotonic()\n"
            "import_tensorflow_quietly()\nprint(round(time.monotonic() - start, 1))\n")
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, env=environment,
                       timeout=60, check=True)  # waits for the process, not for its fd 2
    try:
        assert float((tmp_path / "out").read_text()) < 20  # not the 60 s of the sleep
        assert (tmp_path / "err").read_text().splitlines() == [
            "E0000 00:00:1.5 11 some.cc:7] an error worth showing"]
    finally:
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)


def test_a_directory_writer_killed_between_its_renames_gets_the_old_directory_back(
        tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until reused)
    aside = tmp_path / f".partial-{atomic_files.HOST}-{dead.pid}.export"
    (aside / "half").mkdir(parents=True)  # the killed writer's new directory
    (tmp_path / (aside.name + ".old")).mkdir()  # the previous export, set aside
    (tmp_path / (aside.name + ".old") / "saved_model.pb").write_text("previous")
    with pytest.raises(RuntimeError):  # the next write fails too: the old one is back
        with atomic_files.replacing_directory(tmp_path / "export"):
            raise RuntimeError("failed")
    assert os.listdir(tmp_path) == ["export"]
    assert (tmp_path / "export" / "saved_model.pb").read_text() == "previous"
    with atomic_files.replacing_directory(tmp_path / "export") as temporary:
        (pathlib.Path(temporary) / "saved_model.pb").write_text("new")
    assert os.listdir(tmp_path) == ["export"]
    assert (tmp_path / "export" / "saved_model.pb").read_text() == "new"


def test_a_full_disk_while_writing_is_one_line_naming_the_file(tmp_path):
    import errno

    from dream_keras.file_errors import writing

    path = tmp_path / "out.tsv"
    path.write_text("old\n")
    with pytest.raises(DataFormatError, match=r"out\.tsv: cannot write: no space left on "
                                              r"the device"):
        with writing(path), replacing_open(path) as handle:
            handle.write("new")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["out.tsv"]
