"""Repository scripts run in processes forked from a warm interpreter (tests only).

A fresh `python train.py` spends about 5 CPU-seconds importing TensorFlow and several
seconds of wall time shutting it down; the suite starts some 80 of them. Here one server
per test worker imports TensorFlow and Keras once (and nothing of dream_keras, so every
child imports and registers the package itself, as a fresh interpreter does), then forks
one child per command. The child takes the command's working directory, environment and
output files, and runs the script as `__main__` (runpy): the code `python SCRIPT ARGS`
runs. It is a real process: tests SIGKILL it and read its exit status and output.

What a child does NOT repeat is interpreter start-up and shutdown: at-exit handlers do not
run (the child flushes its output and leaves with os._exit, as multiprocessing's fork
children do). Commands whose environment changes what is read at import time (the
variables in `_IMPORT_TIME`) run as plain subprocesses, and so do the tests that are about
a fresh interpreter (installed console scripts, import costs, the oldest-pair smoke test):
they call subprocess directly.

    run([sys.executable, "train.py", ...], cwd=..., env=..., timeout=...)
    popen([sys.executable, "-c", CODE], stdout=subprocess.DEVNULL)
"""
import atexit
import itertools
import json
import os
import pathlib
import runpy
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import types

# Read when TensorFlow, Keras or Python start: a command that sets one of these to a value
# other than the server's gets a fresh interpreter instead.
_IMPORT_TIME = ("TF_CPP_", "TF_NUM_", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "KERAS_",
                "PYTHON", "CUDA_VISIBLE_DEVICES", "OMP_", "OPENBLAS_", "LD_")


def _server_environment() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


# --------------------------------------------------------------------------- the server

def _exit_code(exit_: SystemExit) -> int:
    """The status an interpreter leaves with for `raise SystemExit(code)`."""
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code
    print(exit_.code, file=sys.stderr)
    return 1


def _run_command(request) -> int:
    """In the forked child: become the command, run it, return its exit status."""
    for fd, (path, mode) in enumerate([(os.devnull, os.O_RDONLY), (request["stdout"], os.O_WRONLY),
                                       (request["stderr"], os.O_WRONLY)]):
        target = os.open(path, mode | (os.O_APPEND if mode == os.O_WRONLY else 0))
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(0, closefd=False)
    argv = request["argv"]
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if argv[0] == "-c":
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
            main = sys.modules["__main__"] = types.ModuleType("__main__")
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        elif argv[0] == "-m":
            sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(argv[0])
            sys.argv, sys.path[0] = [argv[0], *argv[1:]], os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as exit_:
        return _exit_code(exit_)
    except BaseException:  # noqa: BLE001  (what the interpreter would print)
        traceback.print_exc()
        return 1


def _fork(request, replies_fd: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.close(replies_fd)  # the server's pipe to the client is not the command's
        code = _run_command(request)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001  (a closed stream: nothing to flush)
                pass
        os._exit(code)


def serve() -> None:
    """Import the frameworks once, then fork a child per request line on stdin; write
    {"id", "pid"} when one starts and {"pid", "returncode"} when one ends, to stdout."""
    import keras  # noqa: F401  (the expensive imports, done once)
    import tensorflow  # noqa: F401

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # children must not write into the pipe
    pending, running = b"", set()
    while True:
        readable, _, _ = select.select([0], [], [], 0.02)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = _fork(request, replies.fileno())
                running.add(pid)
                replies.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                replies.write(json.dumps({"pid": pid,
                                          "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    for pid in running:  # the client is gone: leave nothing behind
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------- the client

class _Server:
    """The client side: one server process per test worker, started on first use."""

    def __init__(self):
        self.environment = _server_environment()
        self.process = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=self.environment, text=True,
                                        bufsize=1)
        self.folder = tempfile.mkdtemp(prefix="warm_fork_")
        self.ids = itertools.count()
        self.started, self.ended = {}, {}
        self.changed = threading.Condition()
        threading.Thread(target=self._read_replies, daemon=True).start()
        atexit.register(self.close)

    def _read_replies(self):
        for line in self.process.stdout:
            reply = json.loads(line)
            with self.changed:
                if "returncode" in reply:
                    self.ended[reply["pid"]] = reply["returncode"]
                else:
                    self.started[reply["id"]] = reply["pid"]
                self.changed.notify_all()
        with self.changed:  # the server died: nothing will be reported any more
            self.ended[None] = None
            self.changed.notify_all()

    def start(self, argv, cwd, env, stdout, stderr) -> int:
        request_id = next(self.ids)
        request = {"id": request_id, "argv": argv, "cwd": str(cwd), "env": env,
                   "stdout": stdout, "stderr": stderr}
        with self.changed:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            self.changed.wait_for(lambda: request_id in self.started or None in self.ended, 60)
            if request_id not in self.started:
                raise RuntimeError("the warm-fork server did not start the command")
            return self.started.pop(request_id)

    def wait(self, pid, timeout):
        with self.changed:
            self.changed.wait_for(lambda: pid in self.ended or None in self.ended, timeout)
            if None in self.ended and pid not in self.ended:
                raise RuntimeError("the warm-fork server died")
            return self.ended.get(pid)

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


_server = None


def _get_server() -> _Server:
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = _Server()
    return _server


class WarmProcess:
    """A forked command, with the part of subprocess.Popen's interface the tests use."""

    def __init__(self, args, server, pid, stdout_path, stderr_path, capture):
        self.args, self.pid, self.returncode = args, pid, None
        self._server, self._paths, self._capture = server, (stdout_path, stderr_path), capture

    def poll(self):
        if self.returncode is None:
            self.returncode = self._server.wait(self.pid, 0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self._server.wait(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout=None):
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        texts = []
        for path, capture in zip(self._paths, self._capture):
            texts.append(pathlib.Path(path).read_text(errors="replace") if capture else None)
            if capture:
                os.unlink(path)
        return tuple(texts)


def _needs_fresh_interpreter(env) -> bool:
    server = _get_server().environment
    names = set(env) | set(server)
    return any(env.get(name) != server.get(name) for name in names if name.startswith(_IMPORT_TIME))


def popen(args, cwd=None, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True):
    """Start `args` ([sys.executable, SCRIPT | -c CODE | -m MODULE, ...]) like
    subprocess.Popen(..., text=True); stdout/stderr are PIPE (captured) or DEVNULL."""
    if not text:
        raise ValueError("a warm fork's output is text")
    args = [str(arg) for arg in args]
    if args[0] != sys.executable or args[1].startswith("-") and args[1] not in ("-c", "-m"):
        raise ValueError(f"not a command for a warm fork: {args[:2]}")
    env = dict(os.environ if env is None else env)
    if _needs_fresh_interpreter(env):
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True)
    server = _get_server()
    paths, capture = [], []
    for stream in (stdout, stderr):
        capture.append(stream == subprocess.PIPE)
        if stream == subprocess.PIPE:
            handle, path = tempfile.mkstemp(dir=server.folder)
            os.close(handle)
            paths.append(path)
        elif stream == subprocess.DEVNULL:
            paths.append(os.devnull)
        else:
            raise ValueError("stdout and stderr must be subprocess.PIPE or subprocess.DEVNULL")
    pid = server.start(args[1:], cwd or os.getcwd(), env, *paths)
    return WarmProcess(args, server, pid, *paths, capture)


def run(args, cwd=None, env=None, timeout=None, capture_output=True,
        text=True) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True, ...) on a warm fork."""
    if not (capture_output and text):
        raise ValueError("a warm fork's output is captured text")
    process = popen(args, cwd=cwd, env=env)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    serve()
