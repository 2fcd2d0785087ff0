// The search page: query by upload / URL / text / colour palette, a region dragged on the query image,
// filters, a results grid with thumbnails, scores and factor contributions, "more like this" / "exact
// copies" from any hit, and clicks recorded as feedback.
"use strict";

const PALETTE = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "grey", "black"];
const CSS_COLOUR = { grey: "#888", brown: "#8b5a2b", cyan: "#00bcd4", pink: "#ff8fb1" };
const state = { mode: "upload", file: null, region: null, palette: [], queryId: "" };

function selectMode(mode) {
  state.mode = mode;
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.pane === mode));
  document.querySelectorAll(".pane").forEach((p) => p.classList.toggle("active", p.id === "pane-" + mode));
  const imageMode = mode === "upload" || mode === "url";
  document.getElementById("query-image").hidden = !imageMode || !document.getElementById("query-img").src;
}

function showQueryImage(src) {
  const img = document.getElementById("query-img");
  img.src = src;
  clearRegion();
  document.getElementById("query-image").hidden = false;
}

function clearRegion() {
  state.region = null;
  document.getElementById("region-layer").replaceChildren();
  document.getElementById("region-info").textContent = "Drag a box on the query image to search with that region.";
}

// Region: drag on the displayed image; kept in the image's own pixels (what SearchRequest.region expects).
function setupRegionDrawing() {
  const wrap = document.getElementById("query-image");
  const img = document.getElementById("query-img");
  const layer = document.getElementById("region-layer");
  let start = null;
  const point = (event) => {
    const rect = img.getBoundingClientRect();
    return {
      x: Math.min(Math.max(event.clientX - rect.left, 0), rect.width),
      y: Math.min(Math.max(event.clientY - rect.top, 0), rect.height),
    };
  };
  const natural = (a, b) => {
    const sx = img.naturalWidth / img.clientWidth, sy = img.naturalHeight / img.clientHeight;
    return {
      x1: Math.round(Math.min(a.x, b.x) * sx), y1: Math.round(Math.min(a.y, b.y) * sy),
      x2: Math.round(Math.max(a.x, b.x) * sx), y2: Math.round(Math.max(a.y, b.y) * sy),
    };
  };
  wrap.addEventListener("mousedown", (event) => { event.preventDefault(); start = point(event); });
  wrap.addEventListener("mousemove", (event) => {
    if (!start) return;
    layer.replaceChildren();
    placeBox(layer, img, natural(start, point(event)), "", "region");
  });
  window.addEventListener("mouseup", (event) => {
    if (!start) return;
    const box = natural(start, point(event));
    start = null;
    if (box.x2 - box.x1 < 8 || box.y2 - box.y1 < 8) { clearRegion(); return; }
    state.region = box;
    layer.replaceChildren();
    placeBox(layer, img, box, "region", "region").id = "region-box";
    document.getElementById("region-info").textContent = `region ${box.x1},${box.y1} – ${box.x2},${box.y2} px`;
  });
}

function setupPalette() {
  const swatches = document.getElementById("swatches");
  for (const name of PALETTE) {
    const swatch = el("div", { class: "swatch", title: name, "data-colour": name });
    swatch.style.background = CSS_COLOUR[name] || name;
    swatch.addEventListener("click", () => togglePalette(name, swatch));
    swatches.append(swatch);
  }
  document.getElementById("add-colour").addEventListener("click", () => {
    togglePalette(document.getElementById("custom-colour").value, null);
  });
}

function togglePalette(colour, swatch) {
  const index = state.palette.indexOf(colour);
  if (index >= 0) state.palette.splice(index, 1); else state.palette.push(colour);
  if (swatch) swatch.classList.toggle("selected", index < 0);
  document.getElementById("palette").textContent = state.palette.length ? "palette: " + state.palette.join(", ") : "";
}

function commaList(id) {
  return document.getElementById(id).value.split(",").map((s) => s.trim()).filter(Boolean);
}

// The request fields every query shares: tenant, page size, filters, ranking profile.
function commonFields() {
  const request = { tenant: settings.tenant(), topK: Number(document.getElementById("top-k").value) || 12 };
  const filter = {};
  if (commaList("f-categories").length) filter.categories = commaList("f-categories");
  if (commaList("f-brands").length) filter.brands = commaList("f-brands");
  if (document.getElementById("f-in-stock").checked) filter.inStock = true;
  if (document.getElementById("f-safe").checked) filter.safe = true;
  const min = document.getElementById("f-price-min").value, max = document.getElementById("f-price-max").value;
  if (min !== "") filter.priceMin = Number(min);
  if (max !== "") filter.priceMax = Number(max);
  if (Object.keys(filter).length) request.filter = filter;
  const profile = document.getElementById("profile").value;
  if (profile) request.ranking = { name: profile };
  return request;
}

async function runSearch() {
  const request = commonFields();
  let path = "/v1/search", file = null, what;
  if (state.mode === "upload") {
    if (!state.file) return showStatus("choose an image file first", true);
    path = "/v1/search/upload"; file = state.file; what = "image " + state.file.name;
  } else if (state.mode === "url") {
    const url = document.getElementById("url").value.trim();
    if (!url) return showStatus("type an image URL first", true);
    request.image = { uri: url }; what = "image " + url;
  } else if (state.mode === "text") {
    request.text = document.getElementById("text").value.trim();
    if (!request.text) return showStatus("type a text query first", true);
    what = `text "${request.text}"`;
  } else {
    if (!state.palette.length) return showStatus("pick at least one colour", true);
    request.colour = { palette: { colours: state.palette.map((colour) => ({ colour, weight: 1 })) } };
    what = "colours " + state.palette.join(", ");
  }
  if ((state.mode === "upload" || state.mode === "url") && state.region) {
    request.region = state.region; what += " (region)";
  }
  await show(what, () => api(path, request, file));
}

async function similar(imageId, exact) {
  const request = { imageId, exactOnly: exact, tenant: settings.tenant(), topK: commonFields().topK };
  await show(`${exact ? "exact copies of" : "more like"} ${imageId}`, () => api("/v1/similar", request));
}

async function show(what, call) {
  showStatus("searching " + what + " …");
  try {
    const response = await call();
    state.queryId = response.queryId || "";
    render(response, what);
    showStatus(`${(response.hits || []).length} hits for ${what} in ${Math.round(response.tookMs || 0)} ms`);
  } catch (error) {
    showStatus(error.message, true);
  }
}

function factorBars(factors) {
  const max = Math.max(1e-9, ...factors.map((f) => Math.abs(f.contribution || 0)));
  return el("div", { class: "bars" }, ...factors.map((f) => {
    const c = f.contribution || 0;
    const fill = el("div", { class: c < 0 ? "fill neg" : "fill" });
    fill.style.width = `${(100 * Math.abs(c)) / max}%`;
    return el("div", { class: "bar", title: `${f.name}: value ${(f.value || 0).toFixed(3)}, contribution ${c.toFixed(3)}`, "data-factor": f.name },
      el("span", { text: f.name }), el("div", { class: "track" }, fill), el("span", { text: c.toFixed(3) }));
  }));
}

function render(response, what) {
  const results = document.getElementById("results");
  results.replaceChildren();
  document.getElementById("summary").textContent = `${what} · ranker ${response.ranker || "?"}`;
  (response.hits || []).forEach((hit, position) => {
    const img = el("img", { class: "thumb", alt: hit.imageId, title: "click: record a click (feedback)" });
    img.addEventListener("load", () => img.classList.toggle("tiny", img.naturalWidth < 64));
    loadThumbnail(img, hit.imageId);
    const card = el("div", { class: "hit", "data-image-id": hit.imageId, "data-position": String(position) },
      img,
      el("div", { class: "title", text: hit.title || hit.imageId }),
      el("div", { class: "meta", text: `${hit.imageId} · score ${(hit.score || 0).toFixed(3)}` + (hit.duplicateOf ? ` · copy of ${hit.duplicateOf}` : "") }),
      el("div", { class: "meta", text: [hit.category, hit.taxonomy].filter(Boolean).join(" · ") }),
      factorBars(hit.factors || []),
      el("div", { class: "actions" },
        el("button", { text: "More like this", class: "more", onclick: () => similar(hit.imageId, false) }),
        el("button", { text: "Exact copies", class: "exact", onclick: () => similar(hit.imageId, true) })));
    if (hit.uri && /^https?:/.test(hit.uri)) card.append(el("a", { href: hit.uri, target: "_blank", class: "meta", text: "original" }));
    img.addEventListener("click", () => recordClick(card, hit.imageId, position));
    results.append(card);
  });
}

async function recordClick(card, imageId, position) {
  const event = { queryId: state.queryId, tenant: settings.tenant(), imageId, action: "ACTION_CLICK", position };
  try {
    const response = await api("/v1/feedback", { events: [event] });
    card.dataset.feedback = "recorded";
    showStatus(`click on ${imageId} recorded (${response.accepted || 0} accepted)`);
  } catch (error) {
    showStatus(error.message, true);
  }
}

function init() {
  settings.init();
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => selectMode(b.dataset.pane)));
  document.getElementById("file").addEventListener("change", (event) => {
    state.file = event.target.files[0] || null;
    if (state.file) showQueryImage(URL.createObjectURL(state.file));
  });
  document.getElementById("url").addEventListener("change", (event) => { if (event.target.value) showQueryImage(event.target.value); });
  document.getElementById("text").addEventListener("keydown", (event) => { if (event.key === "Enter") runSearch(); });
  document.getElementById("search").addEventListener("click", runSearch);
  const tenant = params.get("tenant");
  if (tenant) document.getElementById("tag-link").href = "tag.html?tenant=" + encodeURIComponent(tenant);
  setupRegionDrawing();
  setupPalette();
}

init();
