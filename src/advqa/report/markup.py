"""HTML pieces of the report: the style sheet, sortable tables, number and strength text.

Every table is a ``<figure>`` with a caption (what it holds and its budget) around a
``<div class="wide">`` that scrolls sideways on its own, so the page never does. A table
of class ``sortable`` sorts by a column when its header is clicked (:data:`SORT_SCRIPT`,
plain inline JavaScript); each numeric cell carries its exact value in ``data-v`` so
that ``2/255`` sorts as 0.00784 and a missing value sorts last either way.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable

import pandas as pd

# A strength is shown as k/255 when it is within this of k/255 (k = 1…255).
K255_TOLERANCE = 1e-6
# Strength names whose values are pixel budgets (an L∞ ε of 2/255 is two grey levels).
BUDGET_NAMES = {"eps"}
STRENGTH_COLUMNS = ("strength", "best_strength", "scored_strength")
RATE_COLUMNS = ("success_rate", "success_low", "success_high", "detection_rate",
                "scored_rate", "max_rate")
LABELS = {"advdss": "AdvDSS", "aeqa": "AEQA", "psnr": "PSNR", "ssim": "SSIM",
          "ms_ssim": "MS-SSIM", "cw_ssim": "CW-SSIM", "js": "JS", "fsim": "FSIM",
          "gmsd": "GMSD", "vif": "VIF", "vsi": "VSI", "mad": "MAD", "niqe": "NIQE",
          "brisque": "BRISQUE", "piqe": "PIQE", "lpips": "LPIPS", "dists": "DISTS",
          "l0": "L0", "l1": "L1", "l2": "L2", "linf": "L\u221e"}
NORM_LABELS = {"linf": "L\u221e", "l2": "L2", "l1": "L1", "l0": "L0"}
SYMBOLS = {"eps": "\u03b5", "kappa": "\u03ba", "overshoot": "overshoot"}

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:.6em 1.5em 2em;color:#222;line-height:1.4}
h1{font-size:1.45em;margin:.2em 0;border-bottom:2px solid #446;padding-bottom:.15em}
h2{font-size:1.25em;border-bottom:1px solid #bbc;margin:1.6em 0 .5em}
#visibility h2{margin-top:.5em}
h3{font-size:1.05em;margin:1.1em 0 .3em}
header p{margin:.2em 0}
nav{font-size:.9em}
nav a{margin-right:.9em}
.note{color:#555;font-size:.9em}
.answer{font-size:1.02em;margin:.3em 0 .5em}
.answer li{margin:.1em 0}
figure{margin:.4em 0 1em}
figcaption{font-size:.86em;color:#333;margin:.15em 0 .3em}
figcaption b{color:#111}
.wide{overflow-x:auto;max-width:100%}
table.data{border-collapse:collapse;font-size:.84em;margin:0}
table.data th,table.data td{border:1px solid #ccd;padding:.16em .45em;text-align:right;
white-space:nowrap}
table.data td.text,table.data th.text{text-align:left}
table.data td.long{white-space:normal;min-width:16em;max-width:40em;text-align:left;
overflow-wrap:anywhere}
table.data thead th{background:#eef;position:relative}
table.sortable thead th{cursor:pointer;user-select:none;padding-right:1.1em}
table.sortable thead th::after{content:"\\2195";position:absolute;right:.2em;color:#99a;
font-size:.85em}
table.sortable thead th[aria-sort=ascending]::after{content:"\\2191";color:#224}
table.sortable thead th[aria-sort=descending]::after{content:"\\2193";color:#224}
table.data tbody tr:nth-child(even){background:#f7f7fb}
tr.unreached td{color:#777;background:#fff6e6}
td.bar{background-repeat:no-repeat}
.meaning{font-size:.84em;color:#333;margin:.2em 0 .6em;padding-left:1.2em}
.meaning li{margin:.05em 0}
.plot{max-width:100%;height:auto;display:block}
details{margin:.4em 0}
summary{cursor:pointer;font-weight:600}
.viewer-controls{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center;font-size:.9em;
margin:.3em 0}
.viewer-controls button{font:inherit;padding:.1em .6em}
.viewer-controls button[aria-pressed=true]{background:#446;color:#fff}
.panes{display:flex;gap:12px;overflow-x:auto;max-width:100%;align-items:flex-start;
padding-bottom:4px}
.panes figure{margin:0;flex:none}
.panes img,.panes canvas{display:block;image-rendering:pixelated;border:1px solid #ccd;
box-sizing:content-box;max-width:none}
#viewer-info{font-size:.86em;margin:.3em 0}
"""

SORT_SCRIPT = """
(function () {
  function key(row, column) {
    var cell = row.cells[column];
    if (!cell) { return null; }
    var raw = cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent.trim();
    if (raw === '' || raw === 'nan') { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  function sortBy(table, header, column) {
    var ascending = header.getAttribute('aria-sort') !== 'ascending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute('aria-sort');
    });
    header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, column), y = key(b, column);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0)
        : (typeof x === 'number' ? -1 : 1);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    if (!table.tHead) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.tabIndex = 0;
      header.title = 'sort by this column';
      header.addEventListener('click', function () { sortBy(table, header, column); });
      header.addEventListener('keydown', function (event) {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          sortBy(table, header, column);
        }
      });
    });
  });
})();
"""


def escape(value) -> str:
    return html.escape(str(value), quote=True)


def metric_label(name: str) -> str:
    return LABELS.get(name, name)


def norm_label(norm: str) -> str:
    return NORM_LABELS.get(norm, norm)


def is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_number(value) -> str:
    """4 significant digits; ``–`` for a missing value, ``∞`` for an infinite one."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    if math.isinf(number):
        return "\u221e" if number > 0 else "\u2212\u221e"
    return f"{number:.4g}"


def format_rate(value) -> str:
    if is_missing(value):
        return "–"
    return f"{100 * float(value):.0f} %" if float(value) in (0.0, 1.0) else \
        f"{100 * float(value):.1f} %"


def k255(value: float) -> int | None:
    """``k`` when ``value`` is k/255 (k = 1…255) within :data:`K255_TOLERANCE` and has no
    short decimal form: 2/255 = 0.00784… gives 2, but 0.4 (= 102/255) and 1 stay numbers,
    since a value of three significant digits was given as that number."""
    value = float(value)
    k = round(value * 255)
    if not (1 <= k <= 255 and abs(value - k / 255) <= K255_TOLERANCE):
        return None
    if abs(float(f"{value:.3g}") - value) <= 1e-12:
        return None
    return k


def is_budget(name: str | None, norm: str | None) -> bool:
    """Whether a strength is a pixel-value budget, shown as k/255: an L∞ ε."""
    return name in BUDGET_NAMES and norm == "linf"


def strength_text(value, name: str | None = None, norm: str | None = None) -> str:
    """A strength as people read it: ``2/255`` for an L∞ ε that is k/255, else the
    number (``0.4``, ``500``, ``0``)."""
    if is_missing(value):
        return "–"
    if is_budget(name, norm):
        k = k255(value)
        if k is not None:
            return f"{k}/255"
    return format_number(value)


def strength_symbol(name: str | None) -> str:
    return SYMBOLS.get(name or "", name or "strength")


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def png_tag(png: bytes, alt: str) -> str:
    return f'<img class="plot" src="{data_uri(png)}" alt="{escape(alt)}">'


def figure(caption: str, body: str) -> str:
    """``body`` (a table or image) under its caption; ``caption`` is HTML."""
    return f"<figure><figcaption>{caption}</figcaption>{body}</figure>"


Formatter = Callable[[object, dict], str]


def cell_html(value, text: str | None, *, classes: str = "", style: str = "") -> str:
    """One ``<td>``: the exact number in ``data-v`` for sorting, its text shown."""
    attributes = f' class="{classes}"' if classes else ""
    if style:
        attributes += f' style="{style}"'
    if isinstance(value, bool):
        attributes += f' data-v="{int(value)}"'
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        attributes += ' data-v=""' if math.isnan(number) else f' data-v="{number!r}"'
    shown = text if text is not None else escape(format_number(value))
    return f"<td{attributes}>{shown}</td>"


def table_html(frame: pd.DataFrame, caption: str, *, headers: dict[str, str] | None = None,
               formats: dict[str, Formatter] | None = None, sortable: bool = True,
               row_classes: list[str] | None = None, table_id: str | None = None,
               text_columns: tuple[str, ...] = (), long_columns: tuple[str, ...] = (),
               styles: dict[str, Callable[[object, dict], str]] | None = None,
               source: pd.DataFrame | None = None) -> str:
    """A captioned, scrollable, optionally sortable table of ``frame``.

    Parameters
    ----------
    frame : DataFrame
        Rows to show, in order (the index is not shown).
    caption : str
        HTML: what the table holds and its budget.
    headers : dict, optional
        Column → header text (HTML-escaped here); default the column name.
    formats : dict, optional
        Column → ``f(value, row) -> HTML`` for the cell's text. Strength columns
        (:data:`STRENGTH_COLUMNS`) default to :func:`strength_text` with the row's
        ``strength_name`` and ``norm``; rate columns to percentages; numbers to 4
        significant digits; anything else is escaped text.
    styles : dict, optional
        Column → ``f(value, row) -> CSS`` for the cell's ``style`` attribute.
    source : DataFrame, optional
        The rows handed to ``formats`` and ``styles`` as ``row`` (same length and order
        as ``frame``, more columns); default ``frame``'s own.
    """
    headers, formats, styles = headers or {}, formats or {}, styles or {}
    columns = list(frame.columns)
    text = set(text_columns) | set(long_columns) | {
        c for c in columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])}
    header_cells = "".join(
        ('<th class="text" scope="col">' if column in text else '<th scope="col">')
        + escape(headers.get(column, column)) + "</th>" for column in columns)
    classes = row_classes or [""] * len(frame)
    lines = []
    contexts = (source if source is not None else frame).to_dict("records")
    for record, context, name in zip(frame.to_dict("records"), contexts, classes, strict=True):
        cells = []
        for column in columns:
            value = record[column]
            shown = render_value(column, value, context, formats)
            kind = "long" if column in long_columns else "text" if column in text else ""
            style = styles[column](value, context) if column in styles else ""
            cells.append(cell_html(plain(value), shown, classes=kind, style=style))
        opening = f'<tr class="{name}">' if name else "<tr>"
        lines.append(opening + "".join(cells) + "</tr>")
    identifier = f' id="{escape(table_id)}"' if table_id else ""
    kind = "data sortable" if sortable else "data"
    table = (f'<div class="wide"><table class="{kind}"{identifier}><thead><tr>{header_cells}'
             f'</tr></thead><tbody>{"".join(lines)}</tbody></table></div>')
    return figure(caption, table)


def plain(value):
    """Python scalars for ``data-v``: numpy numbers become float/int/bool; text stays."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def render_value(column: str, value, row: dict, formats: dict[str, Formatter]) -> str:
    if column in formats:
        return formats[column](value, row)
    if column == "norm" and isinstance(value, str):
        return escape(norm_label(value))
    if column == "strength_name" and isinstance(value, str):
        return escape(strength_symbol(value))
    if column in STRENGTH_COLUMNS:
        return escape(strength_text(value, row.get("strength_name"), row.get("norm")))
    if column in RATE_COLUMNS:
        return escape(format_rate(value))
    if is_missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(plain(value), float):
        return escape(format_number(value))
    return escape(value)


def bar_style(low: float, high: float, color: str = "#c9dcf3") -> Callable[[object, dict], str]:
    """A cell background bar from ``low`` (empty) to ``high`` (full): the value at a
    glance beside its number."""
    def style(value, _row) -> str:
        if is_missing(value) or not (high > low):
            return ""
        share = min(max((float(value) - low) / (high - low), 0.0), 1.0)
        width = 8 + 92 * share
        return (f"background-image:linear-gradient(90deg,{color} {width:.0f}%,"
                f"transparent {width:.0f}%)")
    return style
