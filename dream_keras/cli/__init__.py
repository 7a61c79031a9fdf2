"""Command lines: absl flags and thin `main`s over the library.

Installed as console scripts (`dream-train`, `dream-evaluate`, `dream-predict`,
`dream-prepare`, `dream-synthetic`); the repository's train.py, evaluate.py and predict.py
call the same `main`s. Each module defines its flags when imported, so import only the
command you run.
"""
