"""An evaluation written out: eval.json for programs, eval.md to read, eval.html with plots. Its own
module, so that the Markdown report and the HTML page (which reuses the Markdown one's cells) do not
import each other."""

from __future__ import annotations

from pathlib import Path

from ..runs import write_json_atomic, write_text_atomic
from .compare import EvalResult
from .html import html_report
from .report import markdown_report


def write_reports(result: EvalResult, out_dir: str | Path) -> tuple[Path, Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, html_path = out_dir / "eval.json", out_dir / "eval.md", out_dir / "eval.html"
    write_json_atomic(json_path, result.to_dict())
    write_text_atomic(md_path, markdown_report(result))
    write_text_atomic(html_path, html_report(result))
    return json_path, md_path, html_path
