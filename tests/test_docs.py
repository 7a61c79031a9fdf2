"""The documentation stays true: every flag documented, the README short, its links alive."""
import importlib.util
import re
import subprocess
import sys

from tests import warm_fork
from tests.conftest import REPO


def test_flag_reference_is_current():
    """docs/flags.md is generated from the flag definitions; regenerate it after a change:
    python docs/make_flag_tables.py > docs/flags.md"""
    script = REPO / "docs" / "make_flag_tables.py"
    spec = importlib.util.spec_from_file_location("make_flag_tables", script)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)  # defines no flags: each table comes from a child
    generated = tables.document(lambda module: warm_fork.popen(
        [sys.executable, str(script), module], cwd=REPO, stderr=subprocess.DEVNULL))
    assert generated == (REPO / "docs" / "flags.md").read_text()
    for flag in ("--passes_per_epoch", "--freeze_transformer", "--optimizer",
                 "--augment_reverse_complement", "--reverse_complement_average"):
        assert f"`{flag}`" in generated


def test_readme_is_short_and_its_local_links_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 15_000
    links = re.findall(r"\]\(((?!https?:|#)[^)#]+)", readme)
    assert links, "the README links to its docs/"
    missing = [link for link in links if not (REPO / link).exists()]
    assert missing == []
