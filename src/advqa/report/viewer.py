"""The report's AE viewer: a few AEs at native size beside their references.

Which AEs (deterministic, bounded): per attack and norm in the order of the visibility
ranking, the AE at the strength where it first reaches 50 % success, then the one at
90 % (a strength already shown is not repeated), then, for a pair that never reaches
50 %, its strongest strength with an AE. All come from one reference image where they
can — the image with an AE in the most of those cells (ties: first by name) — so the
attacks are compared on the same picture. The PNG files are embedded as they are (no
re-encoding: the pixels are the AE's), each reference once, until :data:`MAX_IMAGES`
images or :data:`BUDGET` bytes of data URI; the rest are counted, not shown, so a
20,000-AE study embeds as much as a 300-AE one.

The page's script draws, in plain JavaScript with no network: the reference and the AE
at native size (zoom 1×, 2×, 4×, nearest-neighbour), a flicker toggle that alternates
the AE pane between AE and reference twice a second, and the difference
``128 + gain × (AE − reference)`` per channel at gain ×10 or ×50 on a canvas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from advqa.report.markup import (
    data_uri,
    escape,
    format_number,
    metric_label,
    norm_label,
    strength_symbol,
    strength_text,
)
from advqa.report.visibility import VISIBILITY_METRICS, fooled_aes, same_strength_mask

MAX_IMAGES = 40
BUDGET = 2_500_000  # bytes of data URI
GAINS = (10, 50)
ZOOMS = (1, 2, 4)
FLICKER_MS = 500


@dataclass(frozen=True)
class Pick:
    row: dict
    reason: str


def choose(ranking: pd.DataFrame, scored: pd.DataFrame) -> list[Pick]:
    """The AEs to show, in order (see the module docstring), before the size limits."""
    aes = fooled_aes(scored)
    cells: list[tuple[str, str, float, str]] = []
    seen = set()

    def add(attack, norm, strength, reason):
        key = (attack, norm, round(float(strength), 9))
        if key not in seen:
            seen.add(key)
            cells.append((attack, norm, float(strength), reason))

    for rate in sorted(ranking["rate"].unique()):
        block = ranking[(ranking["rate"] == rate) & ranking["reached"].astype(bool)]
        for row in block.itertuples():
            add(row.attack, row.norm, row.scored_strength, f"first strength with ≥ {rate:.0%} "
                "success")
    first = ranking[ranking["rate"] == ranking["rate"].min()] if len(ranking) else ranking
    for row in first[~first["reached"].astype(bool)].itertuples():
        pair = aes[(aes["attack"] == row.attack) & (aes["norm"] == row.norm)]
        if len(pair):
            add(row.attack, row.norm, pair["strength"].max(),
                f"strongest strength with an AE; never reaches {row.rate:.0%} success")
    members = []
    for attack, norm, strength, reason in cells:
        rows = aes[(aes["attack"] == attack) & (aes["norm"] == norm)
                   & same_strength_mask(aes["strength"], strength)]
        if len(rows):
            members.append((rows.sort_values(["image", "id"]), reason))
    if not members:
        return []
    counts = pd.Series([image for rows, _ in members for image in set(rows["image"])])
    counts = counts.value_counts()
    common = sorted(counts[counts == counts.max()].index)[0]
    picks = []
    for rows, reason in members:
        chosen = rows[rows["image"] == common]
        picks.append(Pick((chosen if len(chosen) else rows).iloc[0].to_dict(), reason))
    return picks


def viewer_html(study, ranking: pd.DataFrame, scored: pd.DataFrame, *,
                max_images: int = MAX_IMAGES, budget: int = BUDGET) -> str:
    """The viewer's controls, panes, data and script; a note when there is no AE."""
    picks = choose(ranking, scored)
    images: dict[str, str] = {}
    keys: dict[Path, str] = {}
    items, left_out, used = [], 0, 0
    for pick in picks:
        paths = [study.resolve(pick.row["reference_path"]),
                 study.resolve(pick.row["adversarial_path"])]
        new = [path for path in paths if path not in keys]
        if not all(path.is_file() for path in paths):
            left_out += 1
            continue
        uris = {path: data_uri(path.read_bytes()) for path in new}
        size = sum(len(uri) for uri in uris.values())
        if len(images) + len(new) > max_images or used + size > budget:
            left_out += 1
            continue
        for path, uri in uris.items():
            keys[path] = f"i{len(images)}"
            images[keys[path]] = uri
        used += size
        items.append({"label": label(pick), "reference": keys[paths[0]],
                      "ae": keys[paths[1]], "info": info(pick)})
    if not items:
        return ('<p class="note">No AE image to show (the study kept no AE, or its PNG '
                'files are missing).</p>')
    note = (f"{len(items)} AEs, {len(images)} images embedded as their PNG files "
            f"({used / 1e6:.1f} MB)"
            + (f"; {left_out} more chosen but left out to keep the report small "
               f"(at most {max_images} images, {budget / 1e6:.1f} MB)" if left_out else "")
            + ". Chosen per attack and norm: the AE at the first strength with ≥ 50 % "
            "success, then ≥ 90 %, from one reference image where possible.")
    options = "".join(f'<option value="{index}">{escape(item["label"])}</option>'
                      for index, item in enumerate(items))
    zooms = "".join(f'<option value="{zoom}">{zoom}×{" (native)" if zoom == 1 else ""}'
                    "</option>" for zoom in ZOOMS)
    gains = "".join(f'<button type="button" class="viewer-gain" data-gain="{gain}" '
                    f'aria-pressed="{"true" if gain == GAINS[0] else "false"}">×{gain}</button>'
                    for gain in GAINS)
    data = json.dumps({"images": images, "items": items, "flicker_ms": FLICKER_MS,
                       "gain": GAINS[0]}).replace("</", "<\\/")
    return (
        f'<p class="note">{escape(note)}</p>'
        '<div class="viewer-controls">'
        f'<label>AE <select id="viewer-select">{options}</select></label>'
        '<button type="button" id="viewer-flicker" aria-pressed="false">'
        "Flicker AE \u2194 reference</button>"
        f"<span>Difference {gains}</span>"
        f'<label>Zoom <select id="viewer-zoom">{zooms}</select></label></div>'
        '<p id="viewer-info"></p>'
        '<div class="panes">'
        '<figure><figcaption>reference</figcaption>'
        '<img id="viewer-reference" alt="reference image"></figure>'
        '<figure><figcaption id="viewer-ae-label">AE</figcaption>'
        '<img id="viewer-ae" alt="adversarial example" data-showing="ae"></figure>'
        '<figure><figcaption id="viewer-diff-label">difference</figcaption>'
        '<canvas id="viewer-diff" width="1" height="1"></canvas></figure></div>'
        f'<script type="application/json" id="viewer-data">{data}</script>'
        f"<script>{VIEWER_SCRIPT}</script>")


def label(pick: Pick) -> str:
    row = pick.row
    name = row.get("strength_name") or "strength"
    return (f"{row['attack']} {norm_label(row['norm'])}, {strength_symbol(name)} = "
            f"{strength_text(row['strength'], name, row['norm'])} ({row['image']})")


def info(pick: Pick) -> str:
    row = pick.row
    scores = ", ".join(f"{metric_label(m)} {format_number(row[m])}"
                       for m in VISIBILITY_METRICS if m in row)
    classes = ""
    if row.get("clean_class") is not None and row.get("adversarial_class") is not None:
        classes = f"; classified {row['clean_class']} \u2192 {row['adversarial_class']}"
    return f"{label(pick)}: {pick.reason}{classes}. {scores}".strip()


VIEWER_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('viewer-data').textContent);
  var select = document.getElementById('viewer-select');
  var zoom = document.getElementById('viewer-zoom');
  var flicker = document.getElementById('viewer-flicker');
  var reference = document.getElementById('viewer-reference');
  var ae = document.getElementById('viewer-ae');
  var aeLabel = document.getElementById('viewer-ae-label');
  var canvas = document.getElementById('viewer-diff');
  var diffLabel = document.getElementById('viewer-diff-label');
  var info = document.getElementById('viewer-info');
  var gain = data.gain, timer = null, pixels = null, token = 0;

  function item() { return data.items[Number(select.value)]; }
  function loaded(image) {
    return image.complete && image.naturalWidth ? Promise.resolve()
      : new Promise(function (resolve) { image.onload = resolve; });
  }
  function show(which) {
    var current = item();
    ae.src = data.images[which === 'reference' ? current.reference : current.ae];
    ae.setAttribute('data-showing', which);
    aeLabel.textContent = which === 'reference' ? 'reference (flicker)' : 'AE';
  }
  function scale() {
    var factor = Number(zoom.value);
    [reference, ae, canvas].forEach(function (element) {
      var width = element.naturalWidth || element.width;
      var height = element.naturalHeight || element.height;
      if (!width || !height) { return; }
      element.style.width = (width * factor) + 'px';
      element.style.height = (height * factor) + 'px';
    });
  }
  function readPixels(source) {
    var scratch = document.createElement('canvas');
    scratch.width = source.naturalWidth;
    scratch.height = source.naturalHeight;
    var context = scratch.getContext('2d', {willReadFrequently: true});
    context.drawImage(source, 0, 0);
    return context.getImageData(0, 0, scratch.width, scratch.height);
  }
  function drawDifference() {
    if (!pixels) { return; }
    var context = canvas.getContext('2d', {willReadFrequently: true});
    var out = context.createImageData(pixels.width, pixels.height);
    var a = pixels.ae.data, r = pixels.reference.data, o = out.data;
    for (var i = 0; i < o.length; i += 4) {
      for (var c = 0; c < 3; c++) {
        var v = 128 + gain * (a[i + c] - r[i + c]);
        o[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
      o[i + 3] = 255;
    }
    context.putImageData(out, 0, 0);
    canvas.setAttribute('data-gain', String(gain));
    diffLabel.textContent = 'difference \u00d7' + gain + ' (grey = no change)';
  }
  function load() {
    var current = item(), mine = ++token;
    stopFlicker();
    info.textContent = current.info;
    reference.src = data.images[current.reference];
    var probe = new Image();
    probe.src = data.images[current.ae];
    show('ae');
    Promise.all([loaded(reference), loaded(probe)]).then(function () {
      if (mine !== token) { return; }
      if (reference.naturalWidth !== probe.naturalWidth
          || reference.naturalHeight !== probe.naturalHeight) {
        pixels = null;
        diffLabel.textContent = 'difference: the AE and reference sizes differ';
        return;
      }
      canvas.width = probe.naturalWidth;
      canvas.height = probe.naturalHeight;
      pixels = {width: canvas.width, height: canvas.height,
                ae: readPixels(probe), reference: readPixels(reference)};
      drawDifference();
      scale();
    });
  }
  function stopFlicker() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    flicker.setAttribute('aria-pressed', 'false');
  }
  flicker.addEventListener('click', function () {
    if (timer !== null) { stopFlicker(); show('ae'); return; }
    flicker.setAttribute('aria-pressed', 'true');
    show('reference');
    timer = setInterval(function () {
      show(ae.getAttribute('data-showing') === 'ae' ? 'reference' : 'ae');
    }, data.flicker_ms);
  });
  Array.prototype.forEach.call(document.querySelectorAll('.viewer-gain'), function (button) {
    button.addEventListener('click', function () {
      gain = Number(button.getAttribute('data-gain'));
      Array.prototype.forEach.call(document.querySelectorAll('.viewer-gain'), function (b) {
        b.setAttribute('aria-pressed', b === button ? 'true' : 'false');
      });
      drawDifference();
    });
  });
  select.addEventListener('change', load);
  zoom.addEventListener('change', scale);
  ae.addEventListener('load', scale);
  reference.addEventListener('load', scale);
  load();
})();
"""
