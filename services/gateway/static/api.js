// Shared by the playground's pages: the tenant and token, API calls, thumbnails, small DOM helpers.
// Plain JavaScript, no build step: the gateway serves these files as they are.
"use strict";

const params = new URLSearchParams(window.location.search);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const settings = {
  tenant() { return document.getElementById("tenant").value.trim(); },
  token() { return document.getElementById("token").value.trim(); },
  init() {
    const tenant = document.getElementById("tenant");
    const token = document.getElementById("token");
    tenant.value = params.get("tenant") || localStorage.getItem("visearch.tenant") || "";
    token.value = localStorage.getItem("visearch.token") || "";
    tenant.addEventListener("change", () => localStorage.setItem("visearch.tenant", tenant.value.trim()));
    token.addEventListener("change", () => localStorage.setItem("visearch.token", token.value.trim()));
  },
};

function authHeaders() {
  const token = settings.token();
  return token ? { Authorization: "Bearer " + token } : {};
}

// An API error: the gateway's JSON error body ({"error": {code, status, reason, message}}).
class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(`${status} ${error.reason || ""}: ${error.message || "request failed"}`);
    this.status = status;
    this.reason = error.reason;
  }
}

async function api(path, body, file) {
  let init;
  if (file) {
    const form = new FormData();
    form.append("image", file);
    form.append("request", JSON.stringify(body || {}));
    init = { method: "POST", body: form, headers: authHeaders() };
  } else {
    init = { method: "POST", body: JSON.stringify(body || {}), headers: { "Content-Type": "application/json", ...authHeaders() } };
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Thumbnails come from the gateway's store; with a token they are fetched with it (an <img> cannot send one).
async function loadThumbnail(img, imageId) {
  const url = `/v1/thumbnails?image_id=${encodeURIComponent(imageId)}&tenant=${encodeURIComponent(settings.tenant())}`;
  if (!settings.token()) { img.src = url; return; }
  const response = await fetch(url, { headers: authHeaders() });
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

function showStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "status error" : "status";
}

// A box drawn over a displayed image: `box` in the image's own pixels, scaled to its displayed size.
function placeBox(layer, img, box, label, kind) {
  const sx = img.clientWidth / img.naturalWidth, sy = img.clientHeight / img.naturalHeight;
  const div = el("div", { class: "box " + kind, title: label });
  Object.assign(div.style, {
    left: `${(box.x1 || 0) * sx}px`, top: `${(box.y1 || 0) * sy}px`,
    width: `${((box.x2 || 0) - (box.x1 || 0)) * sx}px`, height: `${((box.y2 || 0) - (box.y1 || 0)) * sy}px`,
  });
  if (label) div.append(el("span", { class: "box-label", text: label }));
  layer.append(div);
  return div;
}
