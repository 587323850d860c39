// The rating page: the reference beside one test image at a time, at native device
// pixels, scored 1-5 from the keyboard (ITU-R BT.500 double stimulus, AdvDSS paper Fig. 1).
// The rater's token is in an HttpOnly cookie set by their invitation link (/?token=…):
// this script never sees it, and no URL it requests carries it.
"use strict";

const $ = (selector) => document.querySelector(selector);
const FLICKER_MS = 400;    // each image of the flicker view stays this long
const ETA_AFTER = 3;       // ratings timed before the time left is estimated
const MAX_RESPONSE_MS = 24 * 3600 * 1000;  // the server's limit on a response time
const TRAINING_NOTES = {
  identical: "The two images are identical: the bottom of the scale, "
    + "1 = no visible difference.",
  strongest: "One of the most visibly perturbed images of this study: the top of the "
    + "scale, 5 = obviously perturbed.",
  practice: "A practice image: rate it as you will rate the study's images.",
};

const state = {
  settings: {break_minutes: 0, flicker: true},
  phase: "loading",  // loading, intro, training, between, rating, finished, error
  training: [],      // training trials not yet scored
  queue: [],         // the study's items of this visit: rated ones stay, for "Previous"
  position: 0,       // index into the list of the current phase
  done: 0,
  total: 0,
  durations: [],     // ms from "both images shown" to the score, per item
  busy: false,
  flickerOn: false,
  flickerTimer: null,
  workingSince: 0,   // when rating (re)started: the break reminder counts from here
  shown: null,       // the trial on screen: {entry, generation, loaded, shownAt, flickerUsed}
  generation: 0,     // late events of an earlier trial are ignored
};

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

function post(path, body) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(body)});
}

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.phase = phase;
  $("#study").hidden = !(phase === "training" || phase === "rating");
  $("#interlude").hidden = !(phase === "intro" || phase === "between");
  $("#finished").hidden = phase !== "finished";
  if (phase !== "training" && phase !== "rating") stopFlicker();
}

// -- progress and time left ------------------------------------------------------------

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function timeLeft() {
  const left = state.total - state.done;
  if (left <= 0 || state.durations.length < ETA_AFTER) return "";
  const minutes = median(state.durations) * left / 60000;
  if (minutes < 1) return "less than a minute left";
  if (minutes < 90) return `about ${Math.round(minutes)} min left`;
  return `about ${(minutes / 60).toFixed(1)} h left`;
}

function updateProgress() {
  const training = state.phase === "training";
  $("#phase").textContent = training
    ? `Training ${state.position + 1} of ${state.training.length}` : "";
  $("#progress").textContent = `${state.done} / ${state.total}`;
  $("#meter").value = state.total ? state.done / state.total : 0;
  $("#eta").textContent = training ? "" : timeLeft();
}

// -- native device pixels --------------------------------------------------------------

function nativeImage(url, width, height, className, alt) {
  const element = document.createElement("img");
  element.className = `native ${className}`;
  element.dataset.width = String(width);
  element.dataset.height = String(height);
  element.alt = alt;
  element.draggable = false;
  element.dataset.src = url;  // set as src once the listeners are on
  return element;
}

function load(element, onLoad, onError) {
  // Listeners first: a cached image may load as soon as src is set.
  element.addEventListener("load", onLoad);
  element.addEventListener("error", onError);
  element.src = element.dataset.src;  // already percent-encoded by the server
}

// CSS size = pixel size / devicePixelRatio, so one image pixel is one device pixel on
// any screen and at any browser zoom; each image is then moved by less than one device
// pixel so that it starts on a device pixel.
// Layout works in 1/64 CSS px: round up so that the box covers every device pixel.
const cssPixels = (pixels, ratio) => `${Math.ceil(pixels / ratio * 64) / 64}px`;

function sizeImages() {
  const ratio = window.devicePixelRatio || 1;
  for (const element of document.querySelectorAll("img.native")) {
    element.style.width = cssPixels(Number(element.dataset.width), ratio);
    element.style.height = cssPixels(Number(element.dataset.height), ratio);
  }
  for (const frame of document.querySelectorAll(".frame")) {
    const images = [...frame.querySelectorAll("img.native")];
    const most = (key) => Math.max(0, ...images.map((i) => Number(i.dataset[key])));
    frame.style.width = cssPixels(most("width"), ratio);
    frame.style.height = cssPixels(most("height"), ratio);
  }
}

function unsnap() {
  for (const frame of document.querySelectorAll(".frame")) {
    frame.style.left = "0px";
    frame.style.top = "0px";
  }
}

function snapToDevicePixels() {
  // With a whole devicePixelRatio, whole CSS pixels are whole device pixels too, and
  // tools that measure in CSS pixels (screenshots of an element) see the image exactly.
  const ratio = window.devicePixelRatio || 1;
  const unit = Number.isInteger(ratio) ? 1 : ratio;
  unsnap();
  for (const frame of document.querySelectorAll(".frame")) {
    const box = frame.getBoundingClientRect();
    const shift = (value) => (Math.round(value * unit) - value * unit) / unit;
    frame.style.left = `${shift(box.left + window.scrollX)}px`;
    frame.style.top = `${shift(box.top + window.scrollY)}px`;
  }
}

function fits() {
  const stage = $("#stage");
  return stage.scrollWidth <= stage.clientWidth
    && document.documentElement.scrollHeight <= window.innerHeight;
}

// Side by side if that fits the window, else one above the other, else side by side
// with a warning (never scaled).
function layout() {
  if ($("#study").hidden) return;
  sizeImages();
  unsnap();
  const stage = $("#stage");
  stage.classList.remove("stacked");
  let fitted = fits();
  if (!fitted) {
    stage.classList.add("stacked");
    fitted = fits();
    if (!fitted) stage.classList.remove("stacked");
  }
  $("#fit-warning").hidden = fitted;
  snapToDevicePixels();
}

// Anything above or beside the images that changes size (a wrapped line, a message, a
// caption, the window) moves them by fractions of a pixel: snap them again before paint.
function watchLayout() {
  const observer = new ResizeObserver(() => { if (!$("#study").hidden) snapToDevicePixels(); });
  for (const element of document.querySelectorAll(
    "#bar, #message, #study, #question, #training-note, #stage, .panel figcaption, #rating")) {
    observer.observe(element);
  }
}

function watchPixelRatio() {
  // Fires when the browser zoom or the screen changes devicePixelRatio.
  const query = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
  query.addEventListener("change", () => { layout(); watchPixelRatio(); }, {once: true});
}

// -- one trial on screen ---------------------------------------------------------------

function currentList() {
  return state.phase === "training" ? state.training : state.queue;
}

function ready() {
  const shown = state.shown;
  return Boolean(shown) && shown.loaded.reference === true && shown.loaded.test === true;
}

function updateControls() {
  const shown = state.shown;
  const usable = ready() && !state.busy && $("#break").hidden;
  for (const button of document.querySelectorAll("button.score")) {
    button.disabled = !usable;
    button.classList.toggle("chosen",
      Boolean(shown) && shown.entry.score === Number(button.dataset.score));
    // A training anchor marks the end of the scale it stands for.
    button.classList.toggle("expected",
      Boolean(shown) && shown.entry.expected === Number(button.dataset.score));
  }
  $("#back").disabled = state.busy || state.position === 0;
  $("#forward").disabled = state.busy || !shown || !shown.entry.rated;
  const flicker = $("#flicker");
  flicker.hidden = !state.settings.flicker;
  flicker.setAttribute("aria-pressed", String(state.flickerOn));
}

function failed(what) {
  showMessage(`${what} could not be loaded, so it cannot be rated. Reload the page; `
              + "if this happens again, tell the study's organiser.");
  updateControls();
}

function show(entry) {
  const generation = ++state.generation;
  const live = (handler) => () => { if (generation === state.generation) handler(); };
  stopFlicker();
  state.shown = {entry, generation, loaded: {reference: null, test: null}, shownAt: 0,
                 flickerUsed: false};
  const loaded = state.shown.loaded;
  const whenReady = () => {
    updateControls();
    if (ready() && !state.shown.shownAt) {
      state.shown.shownAt = performance.now();
      startFlicker();
    }
  };

  // The reference: kept on screen (not reloaded) while the next item shares it.
  const referenceFrame = $("#reference .frame");
  const kept = referenceFrame.querySelector("img");
  if (kept && kept.dataset.src === entry.reference.image_url && kept.dataset.ok === "true") {
    loaded.reference = true;
  } else {
    const reference = nativeImage(entry.reference.image_url, entry.reference.width,
                                  entry.reference.height, "reference", "reference image");
    referenceFrame.replaceChildren(reference);
    delete $("#reference").dataset.failed;
    load(reference,
      live(() => { reference.dataset.ok = "true"; loaded.reference = true; whenReady(); }),
      live(() => {
        loaded.reference = false;
        $("#reference").dataset.failed = "true";
        failed("The reference image");
      }));
  }

  // The test image, and a copy of the reference for the flicker view.
  const item = $(".item");
  const test = nativeImage(entry.image_url, entry.width, entry.height, "test", "test image");
  const copy = nativeImage(entry.reference.image_url, entry.reference.width,
                           entry.reference.height, "flicker-reference",
                           "reference image (flicker view)");
  copy.hidden = true;
  item.querySelector(".frame").replaceChildren(test, copy);
  delete item.dataset.failed;
  delete item.dataset.itemId;
  delete item.dataset.anchor;
  if (entry.kind === "training") {
    item.dataset.anchor = entry.anchor;
  } else {
    item.dataset.itemId = entry.item_id;
  }
  item.dataset.showing = "test";
  load(test, live(() => { loaded.test = true; whenReady(); }),
    live(() => {
      loaded.test = false;
      item.dataset.failed = "true";
      failed("The test image");
    }));
  load(copy, () => {}, () => {});

  const note = $("#training-note");
  note.hidden = entry.kind !== "training";
  note.textContent = entry.kind === "training"
    ? `Training: ${TRAINING_NOTES[entry.anchor] || ""} Not study data.` : "";
  showMessage("");
  updateProgress();
  updateControls();
  layout();
  window.scrollTo(0, 0);
}

// -- flicker: the reference and the test image alternate in place -----------------------

function setShowing(which) {
  const item = $(".item");
  item.dataset.showing = which;
  item.querySelector("img.test").hidden = which !== "test";
  item.querySelector("img.flicker-reference").hidden = which === "test";
}

function stopFlicker() {
  clearInterval(state.flickerTimer);
  state.flickerTimer = null;
  if (document.querySelector(".item img.test")) setShowing("test");
  $("#flicker-state").hidden = true;
}

function startFlicker() {
  if (!state.flickerOn || !ready() || state.flickerTimer !== null) return;
  state.shown.flickerUsed = true;
  $("#flicker-state").hidden = false;
  setShowing("reference");
  state.flickerTimer = setInterval(() => {
    setShowing($(".item").dataset.showing === "test" ? "reference" : "test");
  }, FLICKER_MS);
}

function toggleFlicker() {
  if (!state.settings.flicker || !state.shown) return;
  state.flickerOn = !state.flickerOn;
  if (state.flickerOn) startFlicker(); else stopFlicker();
  updateControls();
}

// -- scoring and moving on --------------------------------------------------------------

async function rate(score) {
  const shown = state.shown;
  if (!ready() || state.busy || !$("#break").hidden) return;
  const entry = shown.entry;
  const measured = Math.round(performance.now() - shown.shownAt);
  const elapsed = measured >= 0 && measured <= MAX_RESPONSE_MS ? measured : null;
  state.busy = true;
  updateControls();
  try {
    if (entry.kind === "training") {
      await post("/api/training", {anchor: entry.anchor, score});
    } else {
      await post("/api/ratings", {item_id: entry.item_id, score,
                                  flicker: shown.flickerUsed, response_ms: elapsed});
    }
  } catch (error) {
    state.busy = false;
    showMessage(`${error.message}; the score was not saved: press a key to retry.`);
    updateControls();
    return;
  }
  if (entry.kind !== "training" && !entry.rated) {
    state.done += 1;
    if (elapsed !== null) state.durations.push(elapsed);
  }
  entry.rated = true;
  entry.score = score;
  state.busy = false;
  state.position += 1;
  if (breakDue()) {
    startBreak();
  } else {
    await proceed();
  }
}

function back() {
  if (state.busy || state.position === 0 || !$("#break").hidden) return;
  state.position -= 1;
  show(currentList()[state.position]);
}

async function forward() {
  if (state.busy || !state.shown || !state.shown.entry.rated || !$("#break").hidden) return;
  state.position += 1;
  await proceed();
}

async function fetchMore() {
  const next = await api("/api/next");
  state.done = next.done;
  state.total = next.total;
  const queued = new Set(state.queue.map((entry) => entry.item_id));
  const fresh = next.items.filter((item) => !item.rated && !queued.has(item.item_id));
  for (const item of fresh) {
    state.queue.push({kind: "item", ...item, reference: next.reference, score: null});
  }
  if (next.items.length && !fresh.length) {
    throw new Error("the server offers nothing new to rate; reload the page");
  }
  return fresh.length > 0;
}

async function proceed() {
  try {
    if (state.phase === "training") {
      if (state.position < state.training.length) {
        show(state.training[state.position]);
      } else {
        interlude("between");
      }
      return;
    }
    if (state.position >= state.queue.length && !(await fetchMore())) {
      setPhase("finished");
      updateProgress();
      return;
    }
    show(state.queue[state.position]);
  } catch (error) {
    showMessage(error.message);
  }
}

// -- instructions, training and breaks --------------------------------------------------

function interlude(kind) {
  setPhase(kind);
  const training = state.training.length;
  const left = state.total - state.done;
  if (kind === "intro") {
    $("#interlude-title").textContent = "Before you start";
    const lines = [
      "You will see a reference image on the left and a test image on the right, both at "
      + "their native resolution (one image pixel on one screen pixel).",
      "Rate how likely it is that the test image was perturbed (attacked), compared with "
      + "the reference: 1 = no visible difference … 5 = obviously perturbed.",
      "Keys: 1–5 give the score and show the next image; ← goes back one image; "
      + (state.settings.flicker ? "F turns the flicker view on or off (the test image and "
         + "the reference alternate in place). " : "")
      + "Keep this window maximised.",
    ];
    if (training) {
      lines.push(`First come ${training} training images that show the ends of the scale; `
                 + "their scores are not study data.");
    }
    $("#interlude-text").replaceChildren(...lines.map((line) => {
      const paragraph = document.createElement("p");
      paragraph.textContent = line;
      return paragraph;
    }));
    $("#interlude-go").textContent = training ? "Start the training (Enter)"
      : "Start (Enter)";
  } else {
    $("#interlude-title").textContent = "Training complete";
    const paragraph = document.createElement("p");
    paragraph.textContent = `From now on every score is recorded: ${left} `
      + `image${left === 1 ? "" : "s"} to rate. You can stop at any time and continue `
      + "later with your link.";
    $("#interlude-text").replaceChildren(paragraph);
    $("#interlude-go").textContent = "Start the study (Enter)";
  }
  updateProgress();
  $("#interlude-go").focus();
}

async function leaveInterlude() {
  if (state.phase !== "intro" && state.phase !== "between") return;
  if (state.phase === "intro" && state.training.length) {
    setPhase("training");
  } else {
    setPhase("rating");
  }
  state.position = 0;
  state.workingSince = performance.now();
  await proceed();
}

function breakDue() {
  const minutes = Number(state.settings.break_minutes);
  return minutes > 0 && performance.now() - state.workingSince >= minutes * 60000;
}

function duration(ms) {
  const minutes = Math.round(ms / 60000);
  if (minutes >= 1) return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  const seconds = Math.max(1, Math.round(ms / 1000));
  return `${seconds} second${seconds === 1 ? "" : "s"}`;
}

function startBreak() {
  stopFlicker();
  $("#break-minutes").textContent = duration(performance.now() - state.workingSince);
  $("#break").hidden = false;
  updateControls();
  $("#break-continue").focus();
}

async function endBreak() {
  if ($("#break").hidden) return;
  $("#break").hidden = true;
  state.workingSince = performance.now();
  await proceed();
}

// -- start ------------------------------------------------------------------------------

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$("#break").hidden) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      endBreak();
    }
    return;
  }
  if (!$("#interlude").hidden) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      leaveInterlude();
    }
    return;
  }
  if (state.phase !== "training" && state.phase !== "rating") return;
  if (/^[1-5]$/.test(event.key)) {
    event.preventDefault();
    if (!event.repeat) rate(Number(event.key));
  } else if (event.key === "f" || event.key === "F") {
    event.preventDefault();
    if (!event.repeat) toggleFlicker();
  } else if (event.key === "ArrowLeft" || event.key === "Backspace") {
    event.preventDefault();
    back();
  } else if (event.key === "ArrowRight") {
    event.preventDefault();
    forward();
  }
}

async function start() {
  if ("scrollRestoration" in history) history.scrollRestoration = "manual";
  let session;
  try {
    session = await api("/api/session");
  } catch (error) {
    setPhase("error");
    showMessage(error.message);
    return;
  }
  state.settings = session.settings;
  state.done = session.done;
  state.total = session.total;
  state.training = session.training.filter((trial) => !trial.done)
    .map((trial) => ({kind: "training", ...trial, rated: false, score: null}));
  $("#who").textContent = session.rater;
  if (state.training.length || (state.done === 0 && state.total > 0)) {
    interlude("intro");
  } else {
    setPhase("rating");
    state.workingSince = performance.now();
    await proceed();
  }
  updateProgress();
}

for (const button of document.querySelectorAll("button.score")) {
  button.addEventListener("click", () => { button.blur(); rate(Number(button.dataset.score)); });
}
$("#back").addEventListener("click", (event) => { event.currentTarget.blur(); back(); });
$("#forward").addEventListener("click", (event) => { event.currentTarget.blur(); forward(); });
$("#flicker").addEventListener("click", (event) => {
  event.currentTarget.blur();
  toggleFlicker();
});
$("#interlude-go").addEventListener("click", leaveInterlude);
$("#break-continue").addEventListener("click", endBreak);
document.addEventListener("keydown", onKey);
window.addEventListener("resize", layout);
watchPixelRatio();
watchLayout();
start();
