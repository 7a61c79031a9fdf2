"""Every ```python snippet of README.md and docs/*.md runs as written (pasted in order,
file by file, into a fresh namespace), so a snippet that stops working fails the suite.

The snippets name a user's paths (runs/base, runs/quickstart, exported/dream_model): they
run in a directory where those hold a small saved run and its SavedModel export.
"""
import re
import shutil

import pytest

from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SNIPPET = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets(path) -> list:
    return _SNIPPET.findall(path.read_text())


def test_the_documentation_has_python_snippets():
    assert len(snippets(REPO / "README.md")) >= 1
    assert len(snippets(REPO / "docs" / "evaluation.md")) >= 3


@pytest.fixture(scope="module")
def user_directory(tmp_path_factory, small_run):
    from dream_keras.export import export_serving
    from dream_keras.inference import load_run

    directory = tmp_path_factory.mktemp("user")
    for name in ("base", "quickstart"):
        (directory / "runs" / name).mkdir(parents=True)
        for file in ("model.keras", "target_scaler.json"):
            shutil.copy(small_run.parent / file, directory / "runs" / name / file)
    export_serving(*load_run(directory / "runs" / "base"), directory / "exported" / "dream_model")
    return directory


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if snippets(d)],
                         ids=lambda d: d.name)
def test_snippets_run(document, user_directory, monkeypatch):
    monkeypatch.chdir(user_directory)
    namespace = {"__name__": "__snippet__"}
    for number, code in enumerate(snippets(document), 1):
        try:
            exec(compile(code, f"{document.name} snippet {number}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001  (report which snippet failed)
            pytest.fail(f"{document.name}, python snippet {number} fails: "
                        f"{type(error).__name__}: {error}\n{code}")
