// The rating page: fetch the next set, show it at native size, send its scores.
// The rater's token is in an HttpOnly cookie set by their invitation link (/?token=…):
// this script never sees it, and no URL it requests carries it.
"use strict";

const $ = (selector) => document.querySelector(selector);
let current = [];
// Item id -> true once its image (and the reference) loaded; false if one failed.
let loaded = new Map();
let referenceLoaded = false;
let generation = 0;  // the set on screen; late events of an earlier set are ignored

function showMessage(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, options) {
  const response = await fetch(path, {credentials: "same-origin", ...options});
  let body = {};
  try { body = await response.json(); } catch (error) { /* not JSON */ }
  if (!response.ok) {
    throw new Error(body.detail || `request failed (${response.status})`);
  }
  return body;
}

function image(url, width, height, alt, onLoad, onError) {
  const element = document.createElement("img");
  // Listeners first: a cached image may load as soon as src is set.
  element.addEventListener("load", onLoad);
  element.addEventListener("error", onError);
  element.width = width;   // natural size: the browser never scales it
  element.height = height;
  element.alt = alt;
  element.src = url;       // already percent-encoded by the server
  return element;
}

function scoreInput(itemId) {
  const fieldset = document.createElement("fieldset");
  fieldset.disabled = true;  // until the images it rates are on screen
  const legend = document.createElement("legend");
  legend.className = "scale";
  legend.textContent = "1 = no visible difference … 5 = obviously perturbed";
  fieldset.append(legend);
  for (let value = 1; value <= 5; value++) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = `score-${itemId}`;
    input.value = String(value);
    input.addEventListener("change", updateSubmit);
    label.append(input, String(value));
    fieldset.append(label);
  }
  return fieldset;
}

function figureOf(itemId) {
  return document.querySelector(`.item[data-item-id="${CSS.escape(itemId)}"]`);
}

function chosen(itemId) {
  const input = document.querySelector(`input[name="score-${CSS.escape(itemId)}"]:checked`);
  return input ? Number(input.value) : null;
}

function ready(itemId) {
  return referenceLoaded && loaded.get(itemId) === true;
}

// An item can be scored only while its image and the reference are both shown.
function updateInputs() {
  for (const itemId of current) {
    figureOf(itemId).querySelector("fieldset").disabled = !ready(itemId);
  }
  updateSubmit();
}

function updateSubmit() {
  $("#submit").disabled = current.length === 0
    || current.some((id) => !ready(id) || chosen(id) === null);
}

function failed(what) {
  showMessage(`${what} could not be loaded, so this set cannot be rated. Reload the page; `
              + "if this happens again, tell the study's organiser.");
  updateInputs();
}

function render(next) {
  $("#progress").textContent = `${next.done} / ${next.total}`;
  if (next.items.length === 0) {
    current = [];
    $("#study").hidden = true;
    $("#finished").hidden = false;
    return;
  }
  current = next.items.map((item) => item.item_id);
  loaded = new Map(current.map((id) => [id, null]));
  referenceLoaded = false;
  const shown = ++generation;
  const live = (handler) => () => { if (shown === generation) handler(); };
  const reference = $("#reference");
  reference.querySelectorAll("img").forEach((element) => element.remove());
  delete reference.dataset.failed;
  const items = $("#items");
  items.replaceChildren();
  next.items.forEach((item, index) => {
    const figure = document.createElement("figure");
    figure.className = "item";
    figure.dataset.itemId = item.item_id;
    const caption = document.createElement("figcaption");
    caption.textContent = `Image ${index + 1}`;
    const picture = image(item.image_url, item.width, item.height, `image ${index + 1}`,
      live(() => { loaded.set(item.item_id, true); updateInputs(); }),
      live(() => {
        loaded.set(item.item_id, false);
        figure.dataset.failed = "true";
        failed(`Image ${index + 1}`);
      }));
    figure.append(caption, picture, scoreInput(item.item_id));
    items.append(figure);
  });
  reference.append(image(next.reference.image_url, next.reference.width,
    next.reference.height, "reference image",
    live(() => { referenceLoaded = true; updateInputs(); }),
    live(() => { reference.dataset.failed = "true"; failed("The reference image"); })));
  $("#finished").hidden = true;
  $("#study").hidden = false;
  updateSubmit();
  window.scrollTo(0, 0);
}

async function load() {
  try {
    const next = await api("/api/next");
    showMessage("");
    render(next);
  } catch (error) {
    $("#study").hidden = true;
    showMessage(error.message);
  }
}

async function submit() {
  const button = $("#submit");
  button.disabled = true;
  try {
    for (const itemId of current) {
      if (!ready(itemId)) {
        throw new Error("an image of this set is not shown");
      }
      await api("/api/ratings", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({item_id: itemId, score: chosen(itemId)}),
      });
    }
  } catch (error) {
    showMessage(`${error.message} — your choices are kept; press Submit to retry.`);
    updateSubmit();
    return;
  }
  await load();
}

$("#submit").addEventListener("click", submit);
load();
