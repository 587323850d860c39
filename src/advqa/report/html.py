"""A single self-contained HTML report of a study directory.

Everything the report shows is read from the study directory through
:class:`advqa.study.StudyDir`: the manifest, the build's success table, the scores
written by ``advqa score``, and the optional outputs of ``advqa evaluate`` (mean
opinion scores, correlations, AEQA applications) and ``advqa detect study``. The
report computes no scores and nothing ``evaluate`` computes (the AEQA curves and
best settings are its tables, drawn as they are); it only groups, averages the
metric columns for a table, and draws. A missing optional output is named with the
command that writes it.

The output is one file with no external reference: images are base64 PNG data
URIs, the style sheet is inline, and there is no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

from advqa.plotting import figure_png, legend, new_figure, subplots
from advqa.study.layout import StudyDir

SECTION_IDS = ("summary", "samples", "metric-means", "correlations", "aeqa-curves",
               "attack-comparison", "detection", "settings")

# Columns of the manifest that are not quality scores.
MANIFEST_COLUMNS = {
    "id", "reference_path", "adversarial_path", "image", "attack", "norm", "strength_name",
    "strength", "parameters", "label", "clean_prediction", "adversarial_prediction",
    "clean_class", "adversarial_class", "clean_correct", "success", "steps",
}
DISTANCES = ("l0", "l1", "l2", "linf")
# Scores shown under each sample AE, with their labels, when the columns exist.
SAMPLE_LABELS = (("advdss", "AdvDSS"), ("aeqa", "AEQA"), ("psnr", "PSNR"), ("linf", "L\u221e"))
THUMBNAIL = 112
MAX_STRENGTHS = 6

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:1em 2em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #446;padding-bottom:.2em}
h2{border-bottom:1px solid #bbc;margin-top:2em}
nav a{margin-right:1em}
table.dataframe{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
table.dataframe th,table.dataframe td{border:1px solid #ccd;padding:.2em .5em;text-align:right}
table.dataframe thead th{background:#eef}
table.dataframe tbody tr:nth-child(even){background:#f7f7fb}
.note{color:#555;font-style:italic}
.grid{border-collapse:collapse;margin-bottom:1em}
.grid td{vertical-align:top;padding:3px;text-align:center;font-size:.72em}
.grid th{font-size:.8em;text-align:left;padding-right:.5em}
.grid img{display:block;margin:0 auto;image-rendering:auto}
.ok{color:#a00}
.plot{max-width:100%;height:auto}
pre{background:#f4f4f8;padding:.8em;overflow-x:auto;font-size:.8em}
.wide{overflow-x:auto;max-width:100%}
"""


def write_report(study_dir: str | Path | StudyDir, *, samples: int = 3) -> Path:
    """Write the study's ``report.html`` and return its path.

    Parameters
    ----------
    study_dir : path or StudyDir
        A built study (settings, manifest and images), optionally scored, with
        opinion scores, correlations, AEQA applications and detection results.
    samples : int
        How many reference images to show in the grid of sample AEs.

    Raises
    ------
    FileNotFoundError
        When the directory holds no manifest (not a built study).
    """
    study = as_study(study_dir).require_built()
    return study.write_report(render_report(study, samples=samples))


def as_study(study: str | Path | StudyDir) -> StudyDir:
    return study if isinstance(study, StudyDir) else StudyDir(study)


def render_report(study: str | Path | StudyDir, *, samples: int = 3) -> str:
    """The report of ``study`` as an HTML string."""
    study = as_study(study)
    settings = study.settings(required=False) or {}
    manifest = study.manifest()
    scored = study.scored_manifest()
    table = scored if scored is not None else manifest
    sections = [
        summary_section(study, settings, manifest),
        samples_section(study, table, samples),
        metric_means_section(scored, manifest),
        correlations_section(study, scored),
        aeqa_curves_section(study, scored),
        attack_comparison_section(study),
        detection_section(study),
        settings_section(settings),
    ]
    title = f"advqa report: {study.path.resolve().name}"
    nav = "".join(f'<a href="#{name}">{name}</a>' for name in SECTION_IDS)
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><nav>{nav}</nav>"
        + "".join(sections)
        + "<footer><p class=\"note\">Report size: __REPORT_SIZE__. Self-contained: "
        "images are inline PNG data; no scripts, fonts or links to other files.</p>"
        "</footer></body></html>\n")
    document = defang(document)
    size = len(document.encode("utf-8"))
    return document.replace("__REPORT_SIZE__", human_size(size))


# --- sections ------------------------------------------------------------------------------


def section(name: str, heading: str, body: str) -> str:
    return f'<section id="{name}"><h2>{escape(heading)}</h2>{body}</section>'


def summary_section(study: StudyDir, settings: dict, manifest: pd.DataFrame) -> str:
    facts = [
        ("reference images", manifest["image"].nunique()),
        ("adversarial examples", len(manifest)),
        ("attacks", ", ".join(sorted(manifest["attack"].unique()))),
        ("norms", ", ".join(sorted(manifest["norm"].unique()))),
        ("grid cells (attack, norm, strength)",
         len(manifest.groupby(["attack", "norm", "strength"]))),
        ("model", settings.get("model", "?")),
    ]
    body = "<ul>" + "".join(f"<li>{escape(k)}: <b>{escape(v)}</b></li>" for k, v in facts) + "</ul>"
    grid = settings.get("grid")
    if grid:
        body += "<h3>Grid</h3>" + frame_html(pd.DataFrame(grid), index=False)
    success = study.success_table()
    if success is not None:
        source = study.success_table_path.name
    else:
        success = derive_summary(manifest)
        source = f"derived from {study.manifest_path.name} (kept AEs only)"
    body += f"<h3>Success rates</h3><p class=\"note\">From {escape(source)}.</p>"
    body += frame_html(success, index=False)
    return section("summary", "Dataset summary", body)


def derive_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """The success table from the manifest alone, when the build's is absent (a study
    built from Python rather than ``advqa build``)."""
    keys = ["attack", "norm", "strength"]
    rows = manifest.assign(
        correct=manifest["clean_correct"].fillna(True).astype(bool),
        fooled=manifest["success"].fillna(False).astype(bool)
        & manifest["clean_correct"].fillna(True).astype(bool))
    table = rows.groupby(keys).agg(
        tried=("id", "size"), correct=("correct", "sum"), fooled=("fooled", "sum"),
        median_l2=("l2", "median"), median_linf=("linf", "median")).reset_index()
    table["success_rate"] = table.fooled / table.correct.clip(lower=1)
    return table[[*keys, "tried", "correct", "fooled", "success_rate", "median_l2",
                  "median_linf"]]


def samples_section(study: StudyDir, table: pd.DataFrame, count: int) -> str:
    images = sorted(table["image"].unique())[:max(count, 0)]
    shown = [(column, label) for column, label in SAMPLE_LABELS if column in table.columns]
    note = (f"The first {len(images)} reference images, each next to its AEs at every "
            f"strength of each attack and norm (at most {MAX_STRENGTHS} strengths, evenly "
            f"spread), downscaled to {THUMBNAIL} px. Labels: "
            + (", ".join(label for _, label in shown) or "none")
            + "; a red name means the model was fooled.")
    body = f'<p class="note">{escape(note)}</p>'
    cache: dict[Path, str] = {}
    for image in images:
        rows = table[table["image"] == image]
        body += f"<h3>{escape(image)}</h3><div class=\"wide\"><table class=\"grid\">"
        reference = study.resolve(rows["reference_path"].iloc[0])
        groups = list(rows.groupby(["attack", "norm"], sort=True))
        for number, ((attack, norm), group) in enumerate(groups):
            group = spread(group.sort_values("strength"), MAX_STRENGTHS)
            cells = [f"<th>{escape(attack)}<br>{escape(norm)}</th>"]
            if number == 0:
                cells.append(f'<td rowspan="{len(groups)}">'
                             + thumbnail_tag(reference, "reference", cache)
                             + "reference<br>" + escape(first(rows, "clean_class")) + "</td>")
            for row in group.to_dict("records"):
                name = row.get("strength_name") or "strength"
                caption = [f"{escape(name)}={format_number(row['strength'])}"]
                adversarial_class = escape(row.get("adversarial_class", ""))
                if row.get("success"):
                    adversarial_class = f'<span class="ok">{adversarial_class}</span>'
                caption.append(adversarial_class)
                caption += [f"{escape(label)} {format_number(row[column])}"
                            for column, label in shown]
                cells.append("<td>" + thumbnail_tag(study.resolve(row["adversarial_path"]),
                                                    str(row["id"]), cache)
                             + "<br>".join(caption) + "</td>")
            body += "<tr>" + "".join(cells) + "</tr>"
        body += "</table></div>"
    if not images:
        body += '<p class="note">No adversarial examples in this study.</p>'
    return section("samples", "Sample adversarial examples", body)


def metric_means_section(scored: pd.DataFrame | None, manifest: pd.DataFrame) -> str:
    if scored is None:
        columns = [c for c in DISTANCES if c in manifest.columns]
        body = ('<p class="note">No scores in this study yet; score it with '
                '<code>advqa score --study DIR</code>. Mean distances from the manifest:</p>')
        body += frame_html(manifest.groupby(["attack", "norm"])[columns].mean().reset_index(),
                           index=False)
        return section("metric-means", "Mean metric values per attack and norm", body)
    columns = metric_columns(scored)
    grouped = scored.groupby(["attack", "norm"])
    means = grouped[columns].mean()
    means.insert(0, "AEs", grouped.size())
    body = (f'<p class="note">Means over the AEs of each attack and norm (all strengths) of '
            f'the columns of scored_manifest.parquet; {len(scored)} AEs.</p>')
    body += frame_html(means.reset_index(), index=False)
    return section("metric-means", "Mean metric values per attack and norm", body)


def correlations_section(study: StudyDir, scored: pd.DataFrame | None) -> str:
    heading = "Correlations with mean opinion scores"
    mos = study.mos()
    if mos is None:
        body = ('<p class="note">No mean opinion scores in this study; import them with '
                '<code>advqa evaluate import</code>.</p>')
        return section("correlations", heading, body)
    body = (f'<p class="note">{len(mos)} AEs have mean opinion scores '
            f'({escape(study.mos_path.name)}).</p>')
    correlations = study.correlations()
    if correlations is not None:
        body += "<h3>Correlations</h3>" + frame_html(correlations, index=False)
    else:
        body += (f'<p class="note">No {escape(study.correlations_path.name)}; compute it '
                 'with <code>advqa evaluate correlations</code>.</p>')
    scatter = study.scatter()
    if scatter is not None:
        body += "<h3>Scatter plots</h3>" + png_tag(scatter, "scatter plots")
    elif scored is not None:
        merged = scored.merge(mos[["id", "mos"]], on="id")
        columns = [c for c in metric_columns(scored) if merged[c].notna().any()][:8]
        if len(merged) and columns:
            body += "<h3>Scatter plots</h3>" + png_tag(mos_scatter(merged, columns),
                                                       "metric against MOS")
    return section("correlations", heading, body)


def aeqa_curves_section(study: StudyDir, scored: pd.DataFrame | None) -> str:
    """Figure 7 and its peaks as ``advqa evaluate aeqa`` wrote them: its curves table is
    drawn (or, for a study from before that table, its figure shown), never recomputed."""
    heading = "AEQA curves and best settings"
    applications = study.applications
    curves, best = applications.curves(), applications.best_settings()
    body = ""
    if curves is not None:
        peaks = best if best is not None else pd.DataFrame(
            columns=["attack", "norm", "best_strength", "peak_mean_aeqa"])
        body += png_tag(aeqa_plot(curves, peaks), "mean AEQA against strength")
    elif applications.curves_figure() is not None:
        body += png_tag(applications.curves_figure(), "AEQA curves")
    if best is not None:
        body += "<h3>Best settings</h3>" + frame_html(best, index=False)
    if body:
        return section("aeqa-curves", heading, body)
    return section("aeqa-curves", heading, missing_applications_note(study, scored))


def missing_applications_note(study: StudyDir, scored: pd.DataFrame | None) -> str:
    """What to run for the AEQA applications: score with aeqa first if needed."""
    command = f"<code>advqa evaluate aeqa {escape(study.path)}</code>"
    if scored is None or "aeqa" not in scored.columns or scored["aeqa"].isna().all():
        return ('<p class="note">No AEQA scores in this study; score it with '
                f'<code>advqa score --study {escape(study.path)} --metrics aeqa</code>, '
                f'then compute the AEQA applications with {command}.</p>')
    return f'<p class="note">No AEQA applications in this study; compute them with {command}.</p>'


def attack_comparison_section(study: StudyDir) -> str:
    comparison = study.applications.attack_comparison()
    if comparison is not None:
        body = frame_html(comparison, index=False)
    else:
        body = ('<p class="note">No attack comparison in this study; compute it with '
                f'<code>advqa evaluate aeqa {escape(study.path)}</code>.</p>')
    return section("attack-comparison", "Attack comparison", body)


def detection_section(study: StudyDir) -> str:
    summary = study.detection_summary()
    if summary is None:
        body = ('<p class="note">No detection results in this study; run '
                '<code>advqa detect study</code> on it.</p>')
        return section("detection", "Detection by the steganalysis (WS) detector", body)
    body = (f'<p>Threshold: the largest WS statistic over the study\'s '
            f'{int(summary.references.iloc[0])} references '
            f'({format_number(summary.threshold.iloc[0])}), so no reference is flagged. '
            'The references are also the benign test set: detection rates are optimistic; '
            'the AUC does not depend on the threshold.</p>')
    body += frame_html(summary.drop(columns=["threshold", "references"]), index=False)
    return section("detection", "Detection by the steganalysis (WS) detector", body)


def settings_section(settings: dict) -> str:
    versions = {"advqa": package_version("advqa"), "torch": package_version("torch")}
    body = "<h3>Versions making this report</h3>" + frame_html(
        pd.DataFrame([versions]), index=False)
    body += (f"<h3>{escape(StudyDir.SETTINGS)}</h3><pre>"
             + escape(json.dumps(settings, indent=2, default=str)) + "</pre>")
    return section("settings", "Settings and versions", body)


# --- plots ---------------------------------------------------------------------------------


# Figures come from advqa.plotting (new_figure, subplots, legend, figure_png): one style.


def aeqa_plot(curves: pd.DataFrame, peaks: pd.DataFrame) -> bytes:
    norms = sorted(curves["norm"].unique())
    figure = new_figure(5 * len(norms), 3.6)
    axes = subplots(figure, 1, len(norms))[0]
    for ax, norm in zip(axes, norms, strict=True):
        for attack, curve in curves[curves["norm"] == norm].groupby("attack"):
            curve = curve.sort_values("strength")
            (line,) = ax.plot(curve["strength"], curve["mean_aeqa"], marker="o", label=attack)
            peak = peaks[(peaks["attack"] == attack) & (peaks["norm"] == norm)]
            ax.plot(peak["best_strength"], peak["peak_mean_aeqa"], marker="*", markersize=16,
                    color=line.get_color(), markeredgecolor="black")
        if (curves.loc[curves["norm"] == norm, "strength"] > 0).all():
            ax.set_xscale("log")
        ax.set_title(f"norm {norm}")
        ax.set_xlabel("strength")
        ax.set_ylabel("mean AEQA")
        legend(ax)
    return figure_png(figure)


def mos_scatter(merged: pd.DataFrame, columns: list[str]) -> bytes:
    count = len(columns)
    per_row = min(count, 4)
    rows = (count + per_row - 1) // per_row
    figure = new_figure(3.2 * per_row, 3 * rows)
    axes = subplots(figure, rows, per_row).ravel()
    for ax, column in zip(axes, columns, strict=False):
        ax.scatter(merged[column], merged["mos"], s=8, alpha=0.6)
        ax.set_xlabel(column)
        ax.set_ylabel("MOS")
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure_png(figure)


# --- helpers -------------------------------------------------------------------------------


def metric_columns(scored: pd.DataFrame) -> list[str]:
    """Score columns: numeric columns that are not manifest bookkeeping."""
    columns = [c for c in scored.columns if c not in MANIFEST_COLUMNS and c not in DISTANCES
               and pd.api.types.is_numeric_dtype(scored[c])
               and not pd.api.types.is_bool_dtype(scored[c])]
    return columns + [c for c in DISTANCES if c in scored.columns]


def spread(group: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` rows, evenly spaced, always keeping the first and last."""
    if len(group) <= limit:
        return group
    positions = sorted({round(i * (len(group) - 1) / (limit - 1)) for i in range(limit)})
    return group.iloc[positions]


def thumbnail_tag(path: Path, alt: str, cache: dict) -> str:
    if path not in cache:
        cache[path] = thumbnail_uri(path)
    uri = cache[path]
    if uri is None:
        return f'<div class="note">missing image {escape(path.name)}</div>'
    return f'<img src="{uri}" alt="{escape(alt)}" width="{THUMBNAIL}">'


def thumbnail_uri(path: Path, size: int = THUMBNAIL) -> str | None:
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return data_uri(buffer.getvalue())


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_tag(png: bytes, alt: str) -> str:
    return f'<img class="plot" src="{data_uri(png)}" alt="{escape(alt)}">'


def frame_html(frame: pd.DataFrame, *, index: bool = True) -> str:
    # A wide table scrolls in its own box; the page itself never scrolls sideways.
    table = frame.to_html(index=index, escape=True, na_rep="–", border=0,
                          float_format=format_number)
    return f'<div class="wide">{table}</div>'



def format_number(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:
        return "–"
    return f"{number:.4g}"


def first(rows: pd.DataFrame, column: str) -> str:
    return str(rows[column].iloc[0]) if column in rows.columns and len(rows) else ""


def escape(value) -> str:
    return html.escape(str(value), quote=True)


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
