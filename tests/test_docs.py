"""The documentation cannot drift from the code (issue #36): every Python example in the README and
the guides runs here, or says on the line above it why it cannot (``<!-- not run: reason -->``); the
README stays a landing page whose head-to-head table is the benchmark's own; the generated pages
are made from what they describe."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs/guides").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def _examples() -> list:
    seen, params = set(), []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            code = match.group("code")
            if code in seen:  # the README's quickstart is also the getting-started page's
                continue
            seen.add(code)
            line = text[: match.start()].count("\n") + 1
            slow = "gocopt.compile(" in code and "effort=" not in code  # a default compile: about 90 s on 2 cores
            params.append(pytest.param(code, match.group("reason"), id=f"{page.relative_to(ROOT)}:{line}",
                                       marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("code,reason", _examples())
def test_every_python_example_runs_or_says_why_not(code, reason, tmp_path, monkeypatch):
    if reason is not None:
        assert len(reason.split()) >= 4, "a skipped example says why, and what runs instead"
        pytest.skip(f"not run: {reason}")
    (tmp_path / "schedules").mkdir()
    shutil.copy(ROOT / "schedules/reference_ddim20_b0.50.json", tmp_path / "schedules")
    monkeypatch.chdir(tmp_path)  # examples write schedules/…: into a scratch copy, never the repository's
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})


def test_the_readme_is_a_landing_page_with_the_two_commands_first():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make demo") and first_block.splitlines()[1].startswith("make test")
    assert text.index("```bash") < text.index("```python")


def test_the_readme_table_is_the_head_to_head_cells():
    """Not hand-copied: regenerated from the committed cells, it is byte for byte what the README shows."""
    from benchmarks.cells import read_cells
    from benchmarks.head_to_head import README_BEGIN, README_END, readme_table

    text = (ROOT / "README.md").read_text()
    shown = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert shown == readme_table(read_cells())


def _hook():
    spec = importlib.util.spec_from_file_location("site_hook", ROOT / "docs/hooks/site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_pages_are_made_from_what_they_describe():
    import json

    hook = _hook()
    landing = hook.landing_page()
    assert "](benchmarks/levers.md)" in landing and "](docs/" not in landing
    cli = hook.cli_page()
    for command in ("gocopt compile", "gocopt show", "--max-samples", "--workers-join"):
        assert command in cli
    schema = json.loads((ROOT / "gocopt/schedule/schema.json").read_text())
    page = hook.schedule_format_page()
    assert all(f"| `{field}` |" in page for field in schema["required"])


def test_a_readme_link_the_site_does_not_carry_is_refused(monkeypatch, tmp_path):
    hook = _hook()
    (tmp_path / "README.md").write_text("see [the code](gocopt/api.py)\n")
    monkeypatch.setattr(hook, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="gocopt/api.py.*which the site does not carry"):
        hook.landing_page()
