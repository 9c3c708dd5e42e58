"""HTML building blocks of the report: escaped cells and tables, figures as PNG data URIs, the
Markdown subset that reader_study writes, and the page's CSS.

Every text that goes into the page passes through `escape`; tables take plain
text cells, so a case id or model name can never inject markup.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
import re
from typing import Any, Iterable, Sequence

from VirtualContrastTraining.config.registries import PAPERS


def escape(value: Any) -> str:
    return html.escape(str(value))


def html_cell(text: str) -> str:
    """An escaped cell; in "mean ± sd" the "± sd" never breaks apart, so a narrow column wraps before it."""
    mean, sep, sd = escape(text).partition(" ± ")
    return f'{mean} <span class="sd">± {sd}</span>' if sep else mean


def html_row(cells: Sequence[str]) -> str:
    """Plain-text cells, escaped here; the first is the row's label."""
    return (f'<tr><th scope="row">{escape(cells[0])}</th>'
            + "".join(f"<td>{html_cell(c)}</td>" for c in cells[1:]) + "</tr>"
            if cells else "")


def html_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, head_html: str | None = None,
               caption: str = "", cls: str = "") -> str:
    """A table of plain-text cells; `head_html` replaces the one-line header for grouped columns."""
    thead = head_html or "<tr>" + "".join(f'<th scope="col">{escape(h)}</th>' for h in header) + "</tr>"
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    attr = f' class="{cls}"' if cls else ""
    return (f'<div class="table-wrap"><table{attr}>{cap}<thead>{thead}</thead>'
            f'<tbody>{"".join(html_row(r) for r in rows)}</tbody></table></div>')


def paper(code: str) -> str:
    """A paper of ../shared/papers by its citation and code: "Rofena et al. 2024 (001)"."""
    return f"{PAPERS[code]} ({code})"


def para(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{escape(text)}</p>' if cls else f"<p>{escape(text)}</p>"


def html_section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def fmt_number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:{fmt}}"


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


class Figures:
    """Counts the figures as they are embedded, so the report can state how many it holds."""

    def __init__(self) -> None:
        self.count = 0

    def png(self, data: bytes, alt: str, caption: str) -> str:
        self.count += 1
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (f'<figure><img src="{src}" alt="{escape(alt)}">'
                f"<figcaption>Figure {self.count}. {escape(caption)}</figcaption></figure>")


def inline_markdown(text: str) -> str:
    """Escaped text with Markdown's **bold** and `code` (all that format_reader_table uses)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escape(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_to_html(text: str) -> str:
    """format_reader_table's Markdown as HTML: pipe tables, "- " lists, paragraphs (the subset it writes)."""
    def kind(line: str) -> str:
        return "table" if line.startswith("|") else "item" if line.startswith("- ") else "blank" if not line else "text"

    out = []
    for what, group in itertools.groupby((line.strip() for line in text.splitlines()), key=kind):
        lines = list(group)
        if what == "table":
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
            rows = [r for r in rows if not all(c and set(c) <= set(":-") for c in r)]   # the |---| line
            out.append(html_table(rows[0], rows[1:]))
        elif what == "item":
            out.append("<ul>" + "".join(f"<li>{inline_markdown(line[2:])}</li>" for line in lines) + "</ul>")
        elif what == "text":
            out.append(f"<p>{inline_markdown(' '.join(lines))}</p>")
    return "".join(out)


CSS = """
:root { --ink: #1d2330; --muted: #5b6474; --line: #d8dde6; --band: #f4f6fa; --accent: #2b5d8a; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 16px; margin: 24px 0 8px; }
h1, h2, h3, p, li, figcaption, caption { overflow-wrap: anywhere; }   /* long paths and names */
.sub, .note, figcaption { color: var(--muted); font-size: 13px; }
.banner { margin: 16px 0; padding: 12px 16px; border: 1px solid #e0b64c; border-left: 6px solid #d08c00;
          background: #fff7e0; border-radius: 4px; }
nav ol { columns: 2; margin: 8px 0 0; padding-left: 20px; font-size: 14px; }
nav a, a { color: var(--accent); }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 10px 0 14px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); text-align: center; }
tbody th { text-align: left; font-weight: 600; }
td { text-align: right; }
td .sd { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfd; }
.kv td, .wide td, .wide tbody th { text-align: left; white-space: normal; word-break: break-all; font-size: 12px;
                  font-family: ui-monospace, Menlo, monospace; }
figure { margin: 14px 0 22px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: 12px; }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table { break-inside: avoid; }
  .table-wrap { overflow: visible; }
}
"""
