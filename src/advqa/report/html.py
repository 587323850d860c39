"""A single self-contained HTML report of a study directory (``advqa report STUDY``).

The report answers first which attack is least visible at equal success, then shows
how every score moves with strength, lets a reader look at AEs at native size, and
keeps the rest (grid cells, Table 6, Figure 7's peaks, Table 7, opinion scores,
detection, settings) below. Sections, in order (:data:`SECTION_IDS`):

``visibility``
    Per target success rate (50 %, 90 %), every attack and norm ranked by the mean
    AdvDSS of its AEs where its success curve first reaches the rate
    (:func:`advqa.report.visibility.equal_success` says how), with AEQA, PSNR and SSIM;
    attacks that never reach it are listed as not reached. A sentence per score says
    what a higher value means (from the metric registry).
``curves``
    Success rate and every score against strength, small multiples, one figure per
    strength axis (ε per norm; DeepFool's overshoot and C&W's κ on their own linear axes).
``viewer``
    A few AEs (:mod:`advqa.report.viewer`) at native size beside their references,
    flicker, amplified difference ×10 / ×50, zoom.
``study``
    The grid cells: success counts and rate, kept AEs and mean scores per cell.
``attack-comparison``, ``aeqa-curves``, ``lbfgs``, ``correlations``, ``detection``
    ``advqa evaluate``'s Table 6, Figure 7's peaks, Table 7, the agreement with opinion
    scores and the steganalysis detector's view: each present only when its file is; the
    study section lists what is missing and the command that writes it.
``settings``
    ``study.json`` and the versions making the report, as tables in a ``<details>``
    closed by default.

Everything is read through :class:`advqa.study.StudyDir`; nothing is scored here and
``evaluate``'s tables are shown as they are. The output is one file with no external
reference: images are data URIs, the style sheet and the scripts (table sorting, the
viewer) are inline, and nothing is fetched. Its size is bounded whatever the study's
size: the viewer embeds at most :data:`advqa.report.viewer.MAX_IMAGES` images and
:data:`advqa.report.viewer.BUDGET` bytes of them, every other part is per grid cell.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

from advqa.report.figures import aeqa_plot, attack_colours, curves_png, families, mos_scatter
from advqa.report.markup import (
    SORT_SCRIPT,
    STYLE,
    bar_style,
    escape,
    figure,
    format_number,
    format_rate,
    is_missing,
    metric_label,
    norm_label,
    png_tag,
    strength_symbol,
    strength_text,
    table_html,
)
from advqa.report.viewer import BUDGET, MAX_IMAGES, viewer_html
from advqa.report.visibility import (
    DISTANCES,
    RATES,
    VISIBILITY_METRICS,
    cell_table,
    derive_success,
    equal_success,
    metric_columns,
    minimal_visibility,
    sort_metric,
    strength_names,
)
from advqa.study.build import grid_rows, minimal_search_rows
from advqa.study.layout import StudyDir

SECTION_IDS = ("visibility", "curves", "viewer", "study", "attack-comparison", "aeqa-curves",
               "lbfgs", "correlations", "detection", "settings")
# Sections every report has; the others appear only when the study holds their file.
ALWAYS = ("visibility", "curves", "viewer", "study", "settings")
TITLES = {"visibility": "Which attack is least visible at equal success?",
          "curves": "Scores against strength", "viewer": "AE viewer",
          "study": "The study: grid cells, success and mean scores",
          "attack-comparison": "Table 6: attacks at one budget",
          "aeqa-curves": "Figure 7: strength of peak mean AEQA",
          "lbfgs": "Table 7: L-BFGS on AEQA against PGD at equal success",
          "correlations": "Agreement with mean opinion scores",
          "detection": "Detection by the steganalysis (WS) detector",
          "settings": "Settings and versions"}
NAV = {"visibility": "visibility", "curves": "curves", "viewer": "viewer", "study": "grid cells",
       "attack-comparison": "Table 6", "aeqa-curves": "Figure 7", "lbfgs": "Table 7",
       "correlations": "MOS", "detection": "detection", "settings": "settings"}
__all__ = ["SECTION_IDS", "aeqa_plot", "mos_scatter", "render_report", "write_report"]


def write_report(study_dir: str | Path | StudyDir, *, max_images: int = MAX_IMAGES) -> Path:
    """Write the study's ``report.html`` and return its path.

    Parameters
    ----------
    study_dir : path or StudyDir
        A built study (settings, manifest and images), optionally scored, with opinion
        scores, correlations, AEQA applications and detection results.
    max_images : int
        At most this many images (AEs and their references) in the AE viewer.

    Raises
    ------
    FileNotFoundError
        When the directory holds no manifest (not a built study).
    """
    study = as_study(study_dir).require_built()
    return study.write_report(render_report(study, max_images=max_images))


def as_study(study: str | Path | StudyDir) -> StudyDir:
    return study if isinstance(study, StudyDir) else StudyDir(study)


class Context:
    """What the sections share, read once: the tables and the numbers derived from them."""

    def __init__(self, study: StudyDir):
        self.study = study
        self.settings = study.settings(required=False) or {}
        self.manifest = study.manifest()
        self.scored = study.scored_manifest()
        self.table = self.scored if self.scored is not None else self.manifest
        success = study.success_table()
        self.success_source = (study.success_table_path.name if success is not None else
                               f"derived from {study.manifest_path.name}: only the AEs it "
                               "kept, so a rate is 100 % wherever an AE was kept")
        if success is None:
            success = derive_success(self.manifest)
        pairs = set(zip(success["attack"], success["norm"], strict=True))
        self.names = strength_names(self.manifest, pairs)
        self.cells = cell_table(success, self.table, self.names)
        self.metrics = metric_columns(self.table) if self.scored is not None else []
        self.ranking = equal_success(self.cells)
        # `advqa build --search minimal` rows, ranked by the search's --metric (its last run).
        searches = self.settings.get("searches") or [{}]
        self.minimal_metric = searches[-1].get("metric", "advdss")
        self.minimal = minimal_visibility(self.table, self.minimal_metric, success)
        self.minimal_unscored = (len(minimal_search_rows(self.table)) > 0
                                 and self.minimal_metric not in self.table.columns)
        applications = study.applications
        self.comparison = applications.attack_comparison()
        self.best = applications.best_settings()
        self.curves = applications.curves()
        self.curves_figure = applications.curves_figure()
        self.lbfgs = applications.lbfgs()
        self.mos = study.mos()
        self.detection = study.detection_summary()

    def present(self) -> list[str]:
        """The section ids this report has, in order."""
        optional = {"attack-comparison": self.comparison is not None,
                    "aeqa-curves": (self.best is not None or self.curves is not None
                                    or self.curves_figure is not None),
                    "lbfgs": self.lbfgs is not None, "correlations": self.mos is not None,
                    "detection": self.detection is not None}
        return [name for name in SECTION_IDS if name in ALWAYS or optional[name]]


def render_report(study: str | Path | StudyDir, *, max_images: int = MAX_IMAGES) -> str:
    """The report of ``study`` as an HTML string."""
    context = Context(as_study(study))
    builders = {"visibility": visibility_section, "curves": curves_section,
                "viewer": lambda c: viewer_section(c, max_images),
                "study": study_section, "attack-comparison": comparison_section,
                "aeqa-curves": aeqa_section, "lbfgs": lbfgs_section,
                "correlations": correlations_section, "detection": detection_section,
                "settings": settings_section}
    present = context.present()
    sections = [section(name, builders[name](context)) for name in present]
    name = context.study.path.resolve().name
    title = f"advqa report: {name}"
    nav = "".join(f'<a href="#{item}">{escape(NAV[item])}</a>' for item in present)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class=\"note\">{facts_line(context)}</p>"
        f"<nav>{nav}</nav></header><main>"
        + "".join(sections)
        + "</main><footer><p class=\"note\">Report size: __REPORT_SIZE__. Self-contained: "
        "images are inline data; the style sheet and the scripts (table sorting, the AE "
        "viewer) are inline; nothing is fetched.</p></footer>"
        f"<script>{SORT_SCRIPT}</script></body></html>\n")
    document = defang(document)
    size = len(document.encode("utf-8"))
    return document.replace("__REPORT_SIZE__", human_size(size))


def section(name: str, body: str) -> str:
    return f'<section id="{name}"><h2>{escape(TITLES[name])}</h2>{body}</section>'


def facts_line(context: Context) -> str:
    manifest = context.manifest
    attacks = ", ".join(sorted(manifest["attack"].unique())) or "none"
    scores = [metric_label(m) for m in context.metrics if m not in DISTANCES]
    scored = (escape(f"scored: {', '.join(scores) or 'no score column'}")
              if context.scored is not None else
              "not scored yet (<code>advqa score --study DIR</code>)")
    return escape(f"{len(manifest)} AEs of {manifest['image'].nunique()} reference images; "
                  f"attacks {attacks}; model {context.settings.get('model', '?')}; ") + scored


# --- visibility ---------------------------------------------------------------------------------


def visibility_section(context: Context) -> str:
    ranking = context.ranking
    metrics = [m for m in VISIBILITY_METRICS if m in ranking.columns]
    key = sort_metric(ranking)
    body = f'<ul class="answer">{"".join(answer(ranking, rate, key) for rate in RATES)}</ul>'
    for rate in RATES:
        body += ranking_table(ranking[ranking["rate"] == rate], rate, metrics, key)
    body += meaning_list(metrics)
    body += (f'<p class="note">Success rates: {escape(context.success_source)}. Scores: means '
             "over the AEs that fooled the model at the strength in “scored at”. The strength "
             "where a curve reaches the rate is interpolated linearly between the strengths "
             "tried either side (≈); “≤” when the first strength tried already reaches it. "
             "The scores are not interpolated: they are those of the AEs at the first strength "
             "tried at or above the rate, the nearest strength at which AEs exist.</p>")
    if context.scored is None:
        body += ('<p class="note">This study is not scored yet: score it with '
                 f"<code>advqa score --study {escape(context.study.path)}</code>.</p>")
    if len(context.minimal):
        body += minimal_table(context.minimal, context.minimal_metric)
    elif context.minimal_unscored:
        metric = escape(context.minimal_metric)
        body += ('<p class="note">This study holds per-image minimal AEs (<code>--search '
                 f"minimal</code>) ranked by {metric}, which it is not scored with: run "
                 f"<code>advqa score --study {escape(context.study.path)} --metrics "
                 f"{metric}</code>.</p>")
    return body


def minimal_table(table: pd.DataFrame, metric: str = "advdss") -> str:
    """The per-image form of the ranking: each image's least visible AE (the smallest
    strength, or tightest budget, that fools it, from ``advqa build --search minimal``),
    its ``metric`` summarised per attack; the AEQA paper's "best setting" (Figure 7) is
    the per-attack form."""
    from advqa.quality import list_metrics

    budgeted = bool(table["budget"].astype(bool).any())
    column = f"median_{metric}"
    shown = table[["attack", "norm", *(["budget"] if budgeted else []), "strength_name", "n",
                   "searched", "median_strength", column, "low", "high"]]
    formats = {
        "median_strength": lambda value, row: escape(
            strength_text(value, row["strength_name"], row["norm"])),
        **{name: lambda value, _row: escape(precise(value))
           for name in (column, "low", "high")},
        "n": lambda value, _row: str(int(value)),
        "searched": lambda value, _row: str(int(value)),
    }
    info = list_metrics().get(metric)
    label = metric_label(metric)
    direction = ("higher is closer to the reference" if info is None or info.higher_is_better
                 else "lower is closer to the reference")
    headers = {"budget": "cell budget", "strength_name": "searched", "n": "images fooled",
               "searched": "images searched", "median_strength": "median value found",
               column: f"median {label}", "low": "95% low", "high": "95% high"}
    caption = ("<b>Least visible AE per image.</b> For each image, the smallest strength "
               "(ε and overshoot by log-space bisection below the grid's value, κ linearly "
               "from 0) or, in a budgeted cell, the tightest budget that fools it "
               f"(<code>advqa build --search minimal</code>), and that AE's {escape(label)} "
               f"({direction}); an image searched from several cells counts once, by its "
               "least visible AE. Per attack: the median over the images with a bootstrap "
               "95% interval, least visible first. The per-attack form of this question is "
               "Figure 7's best setting.")
    return table_html(shown, caption, headers=headers, formats=formats, source=table,
                      table_id="minimal", text_columns=("attack", "norm", "budget",
                                                        "strength_name"))


def answer(ranking: pd.DataFrame, rate: float, key: str | None) -> str:
    block = ranking[ranking["rate"] == rate]
    reached = block[block["reached"].astype(bool)]
    missing = block[~block["reached"].astype(bool)]
    text = f"<li>At <b>{rate:.0%} success</b>: "
    if reached.empty:
        text += "no attack reaches it."
    elif key is None or reached[key].isna().all():
        why = "the study is not scored" if key is None else "no scored AE there"
        text += f"{len(reached)} attacks reach it; {why}, so no ranking by visibility."
    else:
        best, worst = reached.iloc[0], reached.dropna(subset=[key]).iloc[-1]
        text += f"least visible <b>{escape(pair_label(best))}</b> ({ranked_value(best, key)})"
        if len(reached) > 1:
            text += (f"; most visible <b>{escape(pair_label(worst))}</b> "
                     f"({ranked_value(worst, key)})")
        text += "."
    if len(missing):
        text += (" Not reached by " + ", ".join(escape(pair_label(row))
                                               for _, row in missing.iterrows()) + ".")
    return text + "</li>"


def pair_label(row) -> str:
    return f"{row['attack']} {norm_label(row['norm'])}"


def ranked_value(row, key: str) -> str:
    return (f"{metric_label(key)} {precise(row[key])} at "
            f"{escape(reach_text(row))}")


def reach_text(row) -> str:
    name, norm = row["strength_name"], row["norm"]
    if not row["reached"]:
        return f"not reached (max {format_rate(row['max_rate'])})"
    return f"{strength_symbol(name)} {row['bound']} {strength_text(row['strength'], name, norm)}"


def ranking_table(block: pd.DataFrame, rate: float, metrics: list[str], key: str | None) -> str:
    shown = block[["rank", "attack", "norm", "strength", "scored_strength", "scored_rate", "aes",
                   *metrics]]
    formats = {
        **{m: lambda value, _row: escape(precise(value)) for m in metrics},
        "rank": lambda value, _row: "–" if is_missing(value) else str(int(value)),
        "strength": lambda _value, row: escape(reach_text(row)),
        "scored_strength": lambda value, row: escape(
            f"{strength_symbol(row['strength_name'])} = "
            + strength_text(value, row["strength_name"], row["norm"])),
        "scored_rate": lambda value, row: escape(
            format_rate(value) if row["reached"] else f"{format_rate(value)} (strongest tried)"),
        "aes": lambda value, _row: str(int(value)),
    }
    styles = {}
    reached = block[block["reached"].astype(bool)]
    if key in metrics and reached[key].notna().any():
        styles[key] = bar_style(float(reached[key].min()) - 1e-12, float(reached[key].max()))
    headers = {"rank": "#", "strength": f"reaches {rate:.0%} at", "scored_strength": "scored at",
               "scored_rate": "success there", "aes": "AEs",
               **{m: metric_label(m) for m in metrics}}
    order = f"mean {metric_label(key)}, highest (least visible) first" if key else "attack"
    caption = (f"<b>Equal success {rate:.0%}.</b> Each attack and norm at the strength where its "
               f"success rate first reaches {rate:.0%}, ranked by {escape(order)}. Budget: each "
               "attack's own strength at that rate (not one shared ε); scores are means over "
               "its AEs at “scored at”. Click a header to sort.")
    return table_html(shown, caption, headers=headers, formats=formats, styles=styles,
                      source=block, table_id=f"ranking-{round(rate * 100)}",
                      row_classes=["" if reached else "unreached"
                                   for reached in block["reached"].astype(bool)],
                      text_columns=("attack", "norm"))


def precise(value) -> str:
    """5 significant digits: AdvDSS values of 0.99993 and 0.99987 must not both read 0.9999."""
    if is_missing(value):
        return "–"
    return format_number(value) if abs(float(value)) == float("inf") else f"{float(value):.5g}"


def meaning_list(metrics: list[str]) -> str:
    """One sentence per score: what a higher value means, from the metric registry."""
    if not metrics:
        return ""
    from advqa.quality.registry import list_metrics

    registry = list_metrics()
    items = "".join(f"<li>{meaning(name, registry.get(name))}</li>" for name in metrics)
    return f'<ul class="meaning">{items}</ul>'


def meaning(name: str, info) -> str:
    label = f"<b>{escape(metric_label(name))}</b>"
    if info is None:
        return f"{label}: not in the metric registry; see the scorer that wrote it."
    low, high = info.range
    span = f"range {format_number(low)}–{format_number(high)}"
    if info.full_reference:
        side = ("higher = closer to its reference by this measure, i.e. less visible"
                if info.higher_is_better else
                "higher = further from its reference, i.e. more visible")
        if info.needs_model:
            side = ("higher is better by this score, which also weighs how much the "
                    "classifier's output changed (not visibility alone)"
                    if info.higher_is_better else
                    "lower is better by this score, which also weighs the classifier's output")
        kind = "compares the AE with its reference"
    else:
        side = ("higher = the AE alone is judged better quality" if info.higher_is_better else
                "higher = the AE alone is judged worse quality")
        kind = "no reference"
    return f"{label} ({escape(info.description)}; {kind}; {span}): {escape(side)}."


# --- curves -------------------------------------------------------------------------------------


def curves_section(context: Context) -> str:
    cells = context.cells
    metrics = [m for m in context.metrics if m in cells.columns and cells[m].notna().any()]
    colours = attack_colours(cells["attack"])
    body = ('<p class="note">Success rate (from the success table) and the mean of every score '
            "over the AEs that fooled the model, against strength; no AE at a strength, no "
            "point. One figure per strength axis: ε per norm, and DeepFool's overshoot and "
            "C&amp;W's κ each on an axis of their own; an axis is logarithmic only when every "
            "strength on it is positive and they span a decade (κ = 0 stays on a linear one). "
            "An attack keeps its colour in every figure.</p>")
    for _key, title, rows in families(cells):
        png = curves_png(rows, metrics, title=title, colours=colours, peaks=context.best)
        tried = sorted(set(zip(rows["strength"], rows["norm"], rows["strength_name"],
                               strict=True)))
        budget = ", ".join(dict.fromkeys(strength_text(value, name, norm)
                                         for value, norm, name in tried))
        star = (" ★ on the AEQA panel: Figure 7's peak (advqa evaluate aeqa)."
                if context.best is not None and "aeqa" in metrics else "")
        caption = (f"<b>{escape(title)}.</b> Budget: every strength tried "
                   f"({escape(budget)}).{escape(star)}")
        body += figure(caption, png_tag(png, f"scores against strength: {title}"))
    if not metrics:
        body += ('<p class="note">No scores to draw: score the study with '
                 f"<code>advqa score --study {escape(context.study.path)}</code>.</p>")
    return body


# --- viewer -------------------------------------------------------------------------------------


def viewer_section(context: Context, max_images: int) -> str:
    return viewer_html(context.study, context.ranking, grid_rows(context.table),
                       max_images=max_images, budget=BUDGET)


# --- the study's cells --------------------------------------------------------------------------


def study_section(context: Context) -> str:
    cells = context.cells
    main = [m for m in (*VISIBILITY_METRICS, "linf", "l2") if m in cells.columns
            and (m in context.metrics or context.scored is None)]
    counts = [c for c in ("tried", "correct", "fooled", "success_rate", "aes") if c in cells]
    shown = cells[["attack", "norm", "strength_name", "strength", *counts, *main]]
    headers = {"strength_name": "strength of", "success_rate": "success", "aes": "AEs kept",
               **{m: f"mean {metric_label(m)}" for m in main}}
    caption = (f"<b>Per grid cell</b> (attack, norm, strength): images tried, correctly "
               f"classified, fooled, the success rate (fooled / correct; "
               f"{escape(context.success_source)}), the AEs kept and their mean scores. Budget: "
               "every strength of the grid. Click a header to sort.")
    body = table_html(shown, caption, headers=headers, table_id="cells",
                      text_columns=("attack", "norm", "strength_name"))
    others = [m for m in context.metrics if m not in main]
    if others:
        every = cells[["attack", "norm", "strength_name", "strength", "aes", *others]]
        body += ("<details><summary>Every other score per cell "
                 f"({len(others)} columns)</summary>"
                 + table_html(every, "<b>Mean of every other score</b> over each cell's kept "
                              "AEs. Budget: every strength of the grid.",
                              headers={"aes": "AEs", "strength_name": "strength of"},
                              text_columns=("attack", "norm", "strength_name"))
                 + "</details>")
    body += missing_list(context)
    return body


def missing_list(context: Context) -> str:
    path = escape(context.study.path)
    missing = []
    if context.scored is None:
        missing.append(f"scores: <code>advqa score --study {path}</code>")
    if context.comparison is None and context.best is None:
        missing.append(f"Table 6 and Figure 7: <code>advqa evaluate aeqa {path}</code>")
    if context.lbfgs is None:
        missing.append(f"Table 7 (L-BFGS): <code>advqa evaluate aeqa {path} --lbfgs N</code>")
    if context.mos is None:
        missing.append("mean opinion scores: <code>advqa evaluate import</code>")
    if context.detection is None:
        missing.append(f"detection: <code>advqa detect study {path}</code>")
    if not missing:
        return ""
    return ('<p class="note" id="not-in-study">Not in this study (no section): '
            + "; ".join(missing) + ".</p>")


# --- evaluate's tables --------------------------------------------------------------------------


def interval_formats(frame: pd.DataFrame, pairs: dict[str, tuple[str, str]]):
    """Fold each ``low``/``high`` pair into its mean's cell: ``0.94 [0.89, 0.98]``."""
    formats = {}
    for column, (low, high) in pairs.items():
        if column in frame and low in frame and high in frame:
            rate = column.endswith("rate")

            def text(value, row, low=low, high=high, rate=rate):
                show = format_rate if rate else format_number
                if is_missing(value):
                    return "–"
                return escape(f"{show(value)} [{show(row[low])}, {show(row[high])}]")
            formats[column] = text
    return formats


def comparison_section(context: Context) -> str:
    table = context.comparison.copy()
    table["strength_name"] = [context.names.get((a, n), "eps")
                              for a, n in zip(table["attack"], table["norm"], strict=True)]
    pairs = {"mean_aeqa": ("aeqa_low", "aeqa_high"), "mean_js": ("js_low", "js_high"),
             "mean_advdss": ("advdss_low", "advdss_high"),
             "success_rate": ("success_low", "success_high")}
    folded = [low for low, _ in pairs.values()] + [high for _, high in pairs.values()]
    shown = table[[c for c in table.columns if c not in folded and c != "strength_name"]]
    budget = ", ".join(sorted({
        f"{norm_label(row.norm)} {strength_symbol(row.strength_name)} = "
        f"{strength_text(row.strength, row.strength_name, row.norm)}"
        for row in table.itertuples()}))
    caption = (f"<b>Table 6</b> (<code>advqa evaluate aeqa</code>): every attack at one budget "
               "with mean AEQA, JS and AdvDSS (95 % intervals) and the success rate (Wilson "
               f"interval). Budget: <b>{escape(budget)}</b>, the one most ε-attacks share unless "
               "another was asked for. Click a header to sort.")
    headers = {"mean_aeqa": "AEQA [95 %]", "mean_js": "JS [95 %]", "mean_advdss": "AdvDSS [95 %]",
               "success_rate": "success [95 %]", "aes": "AEs"}
    return table_html(shown, caption, headers=headers, formats=interval_formats(table, pairs),
                      source=table, table_id="table6", text_columns=("attack", "norm"))


def aeqa_section(context: Context) -> str:
    body = ""
    if context.best is not None:
        best = context.best.copy()
        best["strength_name"] = [context.names.get((a, n), "strength")
                                 for a, n in zip(best["attack"], best["norm"], strict=True)]
        shown = best[["attack", "norm", "strength_name", "best_strength", "peak_mean_aeqa"]]
        body += table_html(
            shown, "<b>Figure 7's peaks</b> (<code>advqa evaluate aeqa</code>): per attack and "
            "norm, the strength tried with the highest mean AEQA. Budget: every strength of "
            "the grid. Drawn as ★ on the AEQA panels of the curves section.",
            headers={"strength_name": "strength of", "best_strength": "best strength",
                     "peak_mean_aeqa": "peak mean AEQA"},
            table_id="best-settings", text_columns=("attack", "norm", "strength_name"))
    elif context.curves is not None:
        peaks = pd.DataFrame(columns=["attack", "norm", "best_strength", "peak_mean_aeqa"])
        body += png_tag(aeqa_plot(context.curves, peaks), "mean AEQA against strength")
    elif context.curves_figure is not None:
        body += png_tag(context.curves_figure, "AEQA curves (Figure 7)")
    return body


def lbfgs_section(context: Context) -> str:
    table = context.lbfgs
    images = table["images"].dropna().iloc[0] if "images" in table and len(table) else None
    caption = ("<b>Table 7</b> (<code>advqa evaluate aeqa --lbfgs N</code>): AEs that maximise "
               "AEQA itself with L-BFGS (unbounded: no ε), beside L∞ PGD at the smallest ε of "
               "its grid whose success rate is at least L-BFGS's"
               + (f", on {int(images)} reference images" if images is not None else "")
               + ". Budget: PGD's ε as shown. Success is a changed prediction; AdvDSS, L2 and "
               "L∞ are means over all samples. Click a header to sort.")
    return table_html(table, caption, table_id="table7", text_columns=("method",),
                      headers={"eps": "\u03b5 (PGD)", "success_rate": "success",
                               "mean_advdss": "mean AdvDSS", "mean_l2": "mean L2",
                               "mean_linf": "mean L\u221e"},
                      formats={"eps": lambda value, _row: escape(
                          strength_text(value, "eps", "linf"))})


def correlations_section(context: Context) -> str:
    mos, study = context.mos, context.study
    body = (f'<p class="note">{len(mos)} AEs have mean opinion scores '
            f"({escape(study.mos_path.name)}).</p>")
    correlations = study.correlations()
    if correlations is not None:
        body += table_html(correlations, "<b>Agreement of each score with the MOS</b> "
                           "(<code>advqa evaluate correlations</code>). Budget: every rated AE.",
                           table_id="correlations-table",
                           text_columns=tuple(c for c in correlations.columns
                                              if correlations[c].dtype == object))
    else:
        body += (f'<p class="note">No {escape(study.correlations_path.name)}; compute it '
                 "with <code>advqa evaluate correlations</code>.</p>")
    scatter = study.scatter()
    if scatter is not None:
        body += figure("<b>Each score against the MOS.</b>", png_tag(scatter, "scatter plots"))
    elif context.scored is not None:
        merged = context.scored.merge(mos[["id", "mos"]], on="id")
        columns = [c for c in context.metrics if merged[c].notna().any()][:8]
        if len(merged) and columns:
            body += figure("<b>Each score against the MOS</b> (first 8 scores).",
                           png_tag(mos_scatter(merged, columns), "metric against MOS"))
    return body


def detection_section(context: Context) -> str:
    summary = context.detection.copy()
    summary["strength_name"] = [context.names.get((a, n), "strength")
                                for a, n in zip(summary["attack"], summary["norm"], strict=True)]
    threshold = format_number(summary["threshold"].iloc[0]) if len(summary) else "–"
    references = int(summary["references"].iloc[0]) if len(summary) else 0
    body = (f"<p>Threshold: the largest WS statistic over the study's {references} references "
            f"({threshold}), so no reference is flagged. The references are also the benign "
            "test set: detection rates are optimistic; the AUC does not depend on the "
            "threshold.</p>")
    shown = summary.drop(columns=["threshold", "references"])
    shown = shown[["attack", "norm", "strength_name",
                   *[c for c in shown.columns if c not in ("attack", "norm", "strength_name")]]]
    body += table_html(shown, "<b>Per grid cell</b> (<code>advqa detect study</code>): the AEs, "
                       "the share flagged by the WS detector, the ROC AUC of "
                       "AEs against references and the median WS statistic. Budget: every "
                       "strength of the grid.",
                       headers={"strength_name": "strength of", "aes": "AEs",
                                "detection_rate": "flagged", "auc": "ROC AUC",
                                "median_ws": "median WS"},
                       table_id="detection-table",
                       text_columns=("attack", "norm", "strength_name"))
    return body


# --- settings -----------------------------------------------------------------------------------


def settings_section(context: Context) -> str:
    settings = context.settings
    versions = pd.DataFrame([{"package": name, "version": package_version(name)}
                             for name in ("advqa", "torch", "pandas", "matplotlib")])
    body = table_html(versions, "<b>Versions making this report.</b>", sortable=False,
                      text_columns=("package", "version"))
    scalars = [{"setting": key, "value": json.dumps(value, default=str)
                if isinstance(value, list | dict) else str(value)}
               for key, value in settings.items() if key != "grid"]
    if scalars:
        body += table_html(pd.DataFrame(scalars),
                           f"<b>{escape(StudyDir.SETTINGS)}</b>: the build's settings "
                           "(the grid below).", sortable=False, text_columns=("setting",),
                           long_columns=("value",))
    grid = settings.get("grid")
    if grid:
        frame = pd.DataFrame(grid)
        body += table_html(frame, "<b>The grid</b>: one row per cell as the build ran it, every "
                           "setting (defaults included). Click a header to sort.",
                           table_id="grid", text_columns=tuple(
                               c for c in frame.columns if frame[c].dtype == object))
    return (f'<details id="settings-details"><summary>{escape(StudyDir.SETTINGS)} and versions '
            f"({len(settings)} settings, {len(grid or [])} grid cells; closed by default)"
            f"</summary>{body}</details>")


# --- helpers ------------------------------------------------------------------------------------


def defang(document: str) -> str:
    """Keep the text of any URL readable without leaving a link-like ``scheme://``."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*):(//)", r"\1:&#47;&#47;", document)


def human_size(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    return f"{size / 1024:.0f} kB"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
