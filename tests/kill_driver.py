"""train.py with one test hook, to stop a run at an exact point of its life (tests only).

    python tests/kill_driver.py '<JSON action>' <train.py flags...>

Actions ("at"):
  train_batch  {"epoch", "batch"}  SIGKILL after that training batch
  test_batch   {"epoch"}           SIGKILL after the first validation batch of that epoch
  epoch_end    {"epoch"}           SIGKILL after every callback has handled that epoch
  replace      {"name", "nth", "how"}  at the nth os.replace onto a file whose name
               matches `name` (fnmatch): "partial" truncates the file being renamed to
               half and SIGKILLs before the rename (a kill mid-write), "before" SIGKILLs
               before the rename, "after" just after it
  pause        {"epoch", "marker", "release"}  after that epoch, create `marker` and wait
               until `release` exists (a run that holds its directory for a test)
Any action may add {"signal": "SIGTERM"} to stop the run with that signal instead.
Exits by SIGKILL (or the action's signal) at the point, or as train.py does when the point never comes.
"""
import fnmatch
import json
import os
import signal
import sys
import time


_SIGNAL = [signal.SIGKILL]  # the action's "signal" ("SIGTERM": a scheduler's stop)


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), _SIGNAL[0])


def _patch_replace(action):
    real_replace = os.replace
    seen = [0]

    def replace(source, destination, *args, **kwargs):
        if fnmatch.fnmatch(os.path.basename(str(destination)), action["name"]):
            seen[0] += 1
            if seen[0] == action["nth"]:
                if action["how"] == "partial":
                    with open(source, "r+b") as handle:
                        handle.truncate(os.path.getsize(source) // 2)
                    _die()
                if action["how"] == "before":
                    _die()
                real_replace(source, destination, *args, **kwargs)
                _die()
        return real_replace(source, destination, *args, **kwargs)

    os.replace = replace


def _hook_callback(action):
    import keras

    class Hook(keras.callbacks.Callback):
        epoch = -1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if action["at"] == "train_batch" and (self.epoch, batch) == (
                    action["epoch"], action["batch"]):
                _die()

        def on_test_batch_end(self, batch, logs=None):
            if action["at"] == "test_batch" and self.epoch == action["epoch"]:
                _die()

        def on_epoch_end(self, epoch, logs=None):
            if action.get("epoch") != epoch:
                return
            if action["at"] == "epoch_end":
                _die()
            if action["at"] == "pause":
                with open(action["marker"], "w") as handle:
                    handle.write(str(os.getpid()))
                while not os.path.exists(action["release"]):
                    time.sleep(0.05)

    return Hook()


def main():
    action = json.loads(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    _SIGNAL[0] = getattr(signal, action.get("signal", "SIGKILL"))
    if action["at"] == "replace":
        _patch_replace(action)
    else:
        from dream_keras import training

        for_phase = training._RunCallbacks.for_phase
        hook = _hook_callback(action)
        # Appended last: it runs after every callback of the run, the backup included.
        training._RunCallbacks.for_phase = lambda self, *args: [*for_phase(self, *args), hook]
    from dream_keras.cli.train import main as train_main

    train_main()


if __name__ == "__main__":
    main()
