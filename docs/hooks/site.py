"""MkDocs hook: the pages made from something else, at build time, so none of them can drift.

- ``index.md`` is the README, its links rewritten from the repository root to the site;
- ``cli.md`` is every command's ``--help``, read off gocopt's own argument parser;
- ``schedule-format.md`` is the schedule file's JSON schema (``gocopt/schedule/schema.json``),
  its fields tabled, the schema in full below;
- files the README shows from outside ``docs/`` (the schedule heatmap) are copied in.

A link in the README to something outside ``docs/`` that the site does not carry is an error here,
so the landing page never points at a page the site lacks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("schedules/reference_ddim20_b0.50.png",)  # shown by the README, kept outside docs/


def on_files(files: Files, config) -> Files:
    for path in COPIED:
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    files.append(File.generated(config, "index.md", content=landing_page()))
    files.append(File.generated(config, "cli.md", content=cli_page()))
    files.append(File.generated(config, "schedule-format.md", content=schedule_format_page()))
    return files


def landing_page() -> str:
    """README.md with ``docs/x.md`` links as ``x.md``; any other relative link must be one of ``COPIED``."""
    text = (ROOT / "README.md").read_text()

    def relink(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        if target.startswith("docs/"):
            return f"{match.group(1)}({target.removeprefix('docs/')})"
        if target in COPIED:
            return match.group(0)
        raise ValueError(f"README.md links {target!r}, which the site does not carry; link a page under docs/ "
                         "or add the file to COPIED in docs/hooks/site.py")

    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", relink, text)


def cli_page() -> str:
    from gocopt.cli import build_parser

    parser = build_parser()
    parts = ["# Command line\n", "Generated from gocopt's argument parser (`gocopt <command> -h` prints the same). "
             "Every argument is checked before any work: a bad one gets one line naming it and the fix, and exit "
             "code 2.\n", "```text", parser.format_help().rstrip(), "```\n"]
    commands = next(action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction")
    for name, sub in commands.choices.items():
        parts += [f"## gocopt {name}\n", "```text", sub.format_help().rstrip(), "```\n"]
    return "\n".join(parts)


def schedule_format_page() -> str:
    schema = json.loads((ROOT / "gocopt/schedule/schema.json").read_text())
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type") or " / ".join(sorted({s.get("type", "object") for s in spec.get("oneOf", [])}))
        meaning = " ".join(str(spec.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind or '—'} | {'yes' if name in required else ''} | {meaning} |")
    return "\n".join([
        "# The schedule file format\n",
        "A compiled schedule is one JSON file, written atomically by `CachedModel.save` and read by "
        "`gocopt.load`, which checks it against this schema and then against the model and sampler it is "
        "loaded on (model fingerprint, step count, timesteps, guidance, clipping). Generated from "
        "`gocopt/schedule/schema.json`.\n",
        f"{schema.get('description', '')}\n",
        "\n".join(rows) + "\n",
        "## The schema\n",
        "```json",
        json.dumps(schema, indent=2),
        "```\n",
    ])
