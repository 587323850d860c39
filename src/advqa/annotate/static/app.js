// The rating page: fetch the next set, show it at native size, send its scores.
"use strict";

const token = new URLSearchParams(window.location.search).get("token") || "";
const $ = (selector) => document.querySelector(selector);
let current = [];

function showMessage(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = {};
  try { body = await response.json(); } catch (error) { /* not JSON */ }
  if (!response.ok) {
    throw new Error(body.detail || `request failed (${response.status})`);
  }
  return body;
}

function image(url, width, height, alt) {
  const element = document.createElement("img");
  element.src = url;
  element.width = width;   // natural size: the browser never scales it
  element.height = height;
  element.alt = alt;
  return element;
}

function scoreInput(itemId) {
  const fieldset = document.createElement("fieldset");
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

function chosen(itemId) {
  const input = document.querySelector(`input[name="score-${CSS.escape(itemId)}"]:checked`);
  return input ? Number(input.value) : null;
}

function updateSubmit() {
  $("#submit").disabled = current.length === 0 || current.some((id) => chosen(id) === null);
}

function render(next) {
  $("#progress").textContent = `${next.done} / ${next.total}`;
  if (next.items.length === 0) {
    current = [];
    $("#study").hidden = true;
    $("#finished").hidden = false;
    return;
  }
  const reference = $("#reference");
  reference.querySelectorAll("img").forEach((element) => element.remove());
  reference.append(image(next.reference.image_url, next.reference.width,
                         next.reference.height, "reference image"));
  const items = $("#items");
  items.replaceChildren();
  next.items.forEach((item, index) => {
    const figure = document.createElement("figure");
    figure.className = "item";
    figure.dataset.itemId = item.item_id;
    const caption = document.createElement("figcaption");
    caption.textContent = `Image ${index + 1}`;
    figure.append(caption, image(item.image_url, item.width, item.height,
                                 `image ${index + 1}`), scoreInput(item.item_id));
    items.append(figure);
  });
  current = next.items.map((item) => item.item_id);
  $("#finished").hidden = true;
  $("#study").hidden = false;
  updateSubmit();
  window.scrollTo(0, 0);
}

async function load() {
  try {
    render(await api(`/api/next?token=${encodeURIComponent(token)}`));
    showMessage("");
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
      await api("/api/ratings", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({token: token, item_id: itemId, score: chosen(itemId)}),
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
if (token) {
  load();
} else {
  showMessage("This page needs your personal link (…/?token=…).");
}
