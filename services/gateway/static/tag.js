// The tagging page: objects with their boxes on the image, OCR text and lines, taxonomy path, attributes
// with scores, colours, quality and moderation, from /v1/recognize.
"use strict";

const QUALITY = ["blur", "resolution", "has_text", "aspect", "collage", "model", "mosaic", "detail"];

function row(...cells) { return el("tr", {}, ...cells.map((c) => el("td", { text: String(c) }))); }

async function recognizeImage() {
  const file = document.getElementById("file").files[0];
  const url = document.getElementById("url").value.trim();
  if (!file && !url) return showStatus("choose an image file or type a URL", true);
  showStatus("recognizing …");
  const img = document.getElementById("image");
  const loaded = new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; });
  img.src = file ? URL.createObjectURL(file) : url;
  try {
    const result = file ? await api("/v1/recognize/upload", {}, file) : await api("/v1/recognize", { image: { uri: url } });
    await loaded;
    document.getElementById("image-wrap").hidden = false;
    render(result);
    showStatus("done");
  } catch (error) {
    showStatus(error.message, true);
  }
}

function polygonBox(points) {
  const xs = points.map((p) => p.x || 0), ys = points.map((p) => p.y || 0);
  return { x1: Math.min(...xs), y1: Math.min(...ys), x2: Math.max(...xs), y2: Math.max(...ys) };
}

function render(result) {
  const img = document.getElementById("image");
  const layer = document.getElementById("box-layer");
  layer.replaceChildren();
  const detections = (result.detections && result.detections.detections) || [];
  const objects = document.getElementById("objects");
  objects.replaceChildren(el("tr", {}, el("th", { text: "object" }), el("th", { text: "score" })));
  for (const d of detections) {
    placeBox(layer, img, d.box || {}, `${d.label} ${(d.score || 0).toFixed(2)}`, "object");
    objects.append(row(d.label, (d.score || 0).toFixed(3)));
  }
  const lines = (result.text && result.text.lines) || [];
  for (const line of lines) placeBox(layer, img, polygonBox(line.polygon || []), line.text, "text");
  document.getElementById("ocr-text").textContent = (result.text && result.text.text) || "(no text)";

  const cls = result.classification || {};
  document.getElementById("taxonomy").textContent = (cls.taxonomy || []).map((n) => n.name).join(" › ") || "(none)";
  const attributes = document.getElementById("attributes");
  attributes.replaceChildren(el("tr", {}, el("th", { text: "attribute" }), el("th", { text: "value" }), el("th", { text: "score" })));
  const quality = document.getElementById("quality");
  quality.replaceChildren(el("tr", {}, el("th", { text: "quality" }), el("th", { text: "value" }), el("th", { text: "score" })));
  for (const a of cls.attributes || []) {
    const target = QUALITY.includes(a.name) ? quality : attributes;
    const tr = row(a.name, a.value, (a.score || 0).toFixed(3));
    tr.dataset.attribute = a.name;
    target.append(tr);
  }
  const colours = document.getElementById("colours");
  colours.replaceChildren(...(cls.colours || []).map((c) => {
    const chip = el("span", { class: "chip", text: `${c.name} ${Math.round(100 * (c.fraction || 0))}%` });
    chip.style.borderLeft = `14px solid ${c.hex}`;
    return chip;
  }));
  const moderation = cls.moderation || {};
  document.getElementById("moderation").textContent = moderation.scores
    ? `${moderation.safe ? "safe" : "unsafe"} · ` + moderation.scores.map((s) => `${s.name} ${(s.score || 0).toFixed(3)}`).join(", ")
    : "(not moderated)";
}

settings.init();
document.getElementById("recognize").addEventListener("click", recognizeImage);
const tenantParam = params.get("tenant");
if (tenantParam) document.getElementById("search-link").href = "index.html?tenant=" + encodeURIComponent(tenantParam);
