"""The test harness's warm forks (tests/warm_fork.py) behave as `python ...` does: the
same output, exit status, working directory and environment, a real killable process, and
nothing of the package imported before the command imports it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import warm_fork

_COMMANDS = {
    "prints_and_exits_0": "import os, sys; print('out', sys.argv[1:], os.getcwd()); "
                          "print('err', file=sys.stderr)",
    "exit_status": "raise SystemExit(3)",
    "exit_message": "raise SystemExit('a message')",
    "uncaught_exception": "raise ValueError('boom')",
    "environment": "import os; print(os.environ.get('WARM_FORK_TEST'))",
    "package_not_preloaded": "import sys; print(sorted(m for m in sys.modules "
                             "if m.startswith('dream_keras')))",
}


@pytest.mark.parametrize("name", _COMMANDS)
def test_a_command_reads_as_from_a_new_interpreter(name, tmp_path):
    command = [sys.executable, "-c", _COMMANDS[name], "a", "b"]
    env = dict(os.environ, WARM_FORK_TEST="set")
    real = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    forked = warm_fork.run(command, cwd=tmp_path, env=env, timeout=120)
    assert forked.returncode == real.returncode
    assert forked.stdout == real.stdout
    if name == "uncaught_exception":  # the same error, below a traceback with one more frame
        assert forked.stderr.startswith("Traceback") and real.stderr.startswith("Traceback")
        assert forked.stderr.splitlines()[-1] == real.stderr.splitlines()[-1]
    else:
        assert forked.stderr == real.stderr


def test_a_script_runs_as_main_from_its_own_directory(tmp_path):
    script = tmp_path / "tool.py"
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    script.write_text("import sys, helper\nif __name__ == '__main__':\n"
                      "    print(helper.VALUE, sys.argv)\n")
    forked = warm_fork.run([sys.executable, str(script), "--x=1"], cwd=os.getcwd(), timeout=120)
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.strip() == f"7 {[str(script), '--x=1']}"


def test_a_forked_command_is_a_process_that_can_be_killed(tmp_path):
    marker = tmp_path / "started"
    process = warm_fork.popen([sys.executable, "-c", f"import pathlib, time\n"
                               f"pathlib.Path({str(marker)!r}).write_text('x')\n"
                               "time.sleep(600)"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists() and process.poll() is None
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    with pytest.raises(subprocess.TimeoutExpired):
        warm_fork.run([sys.executable, "-c", "import time; time.sleep(600)"], timeout=0.5)


def test_an_import_time_variable_gets_a_new_interpreter():
    command = [sys.executable, "-c", "import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"]
    process = warm_fork.popen(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1"))
    assert isinstance(process, subprocess.Popen)  # not a fork of the server
    assert process.communicate(timeout=120)[0].strip() == "1"
    with pytest.raises(ValueError, match="not a command for a warm fork"):
        warm_fork.popen([sys.executable, "-X", "importtime", "-c", "pass"])
