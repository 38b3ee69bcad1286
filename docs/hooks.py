"""The docs site's generated parts (a mkdocs hook, ``hooks:`` in ``mkdocs.yml``).

Pages say ``<!-- lotan:NAME -->`` where a list is generated from its one declaration:

- ``models``: what can be lowered (:func:`lotan.planner.lowering.table`, the registry);
- ``options``: every setting of ``lotan.fit`` and the faces that take it
  (:data:`lotan.options.FIT_KEYWORDS`);
- ``rules``: the planner's rules (:data:`lotan.planner.rules.RULES`);
- ``errors``: the bad-input table (``tests/bad_input_cases.py``, each row a test).

The benchmark reports stay where the harness writes them (``bench/results/*/report.md``);
they become pages ``bench/<suite>/report.md`` of the site, with their images.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.bad_input_cases


def _models() -> str:
    from lotan.planner.lowering import table

    return table()


def _options() -> str:
    from lotan.job import FIT_KEYS
    from lotan.options import FIT_KEYWORDS, FitConfig

    defaults = FitConfig().keywords()
    lines = [
        "| setting | object | default | meaning | job, `--flag`, estimator |",
        "|---|---|---|---|---|",
    ]
    for kw, part, name, decl in FIT_KEYWORDS:
        where = f"`{part}.{name}`" if name and kw not in ("engine", "planner") else f"`{part}`"
        default = "all rules" if kw == "planner" else f"`{defaults[kw]!r}`"
        faces = "yes" if kw in FIT_KEYS else f"Python only: {decl.python_only}"
        doc = decl.doc.replace("|", "\\|")
        lines.append(f"| `{kw}` | {where} | {default} | {doc} | {faces} |")
    return "\n".join(lines)


def _rules() -> str:
    from lotan.planner.rules import RULES

    lines = ["| flag | rule | identity |", "|---|---|---|"]
    for rule in RULES:
        doc = (rule.__module__ and sys.modules[rule.__module__].__doc__ or "").strip()
        identity = next((p for p in doc.split("\n\n") if p.startswith("Identity")), "")
        identity = " ".join(identity.removeprefix("Identity:").split()).replace("|", "\\|")
        lines.append(f"| `{rule.name}` | `{rule.__name__}` | {identity} |")
    return "\n".join(lines)


def _errors() -> str:
    from tests.bad_input_cases import table

    return table()


GENERATED = {"models": _models, "options": _options, "rules": _rules, "errors": _errors}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- lotan:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


def on_files(files: Files, config: Any) -> Files:
    """The benchmark reports (and their images) as pages of the site."""
    for path in sorted((ROOT / "bench" / "results").glob("*/*")):
        if path.suffix in (".md", ".png"):
            uri = f"bench/{path.parent.name}/{path.name}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
