// The console's behaviour: read the public API, draw it, send images and feedback.
// No framework: a few DOM helpers. Every value from the server goes in through textContent.
"use strict";

const state = { token: null, answer: null };   // the admin token lives here only (never stored)
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function call(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

// ---- models ------------------------------------------------------------------------------------
// Offline accuracy (stage 1 / stage 2, from each version's metadata.json) and online accuracy
// (feedback) are Prometheus series on /metrics: one source of truth for dashboards and this page.
function parseMetrics(text) {
  const series = [];
  const line = /^(serving_model_eval_accuracy|serving_feedback_total|serving_feedback_correct_total)\{([^}]*)\} (\S+)$/;
  for (const row of text.split("\n")) {
    const match = line.exec(row);
    if (!match) continue;
    const labels = {};
    for (const pair of match[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    series.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return series;
}

function figures(series, model, version) {
  const mine = series.filter((s) => s.labels.model === model && s.labels.version === version);
  const pick = (name, stage) => mine.find((s) => s.name === name && (!stage || s.labels.stage === stage));
  const total = pick("serving_feedback_total"), correct = pick("serving_feedback_correct_total");
  return {
    stage1: pick("serving_model_eval_accuracy", "stage1"),
    stage2: pick("serving_model_eval_accuracy", "stage2"),
    online: total && total.value > 0 ? { value: correct.value / total.value, n: total.value } : null,
  };
}

const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);

function versionRow(model, entry, series) {
  const f = figures(series, model, entry.version);
  const row = el("tr");
  row.dataset.version = entry.version;
  row.append(el("td", entry.version), el("td", entry.state, `state-${entry.state}`));
  const runtime = entry.runtime ? `${entry.runtime.name} ${entry.runtime.precision}` : "–";
  const cell = el("td", runtime);
  if (entry.runtime && entry.runtime.note) cell.title = entry.runtime.note;
  row.append(cell, el("td", percent(f.stage1 && f.stage1.value)), el("td", percent(f.stage2 && f.stage2.value)));
  const online = el("td", f.online ? `${percent(f.online.value)} (${f.online.n})` : "–", "online");
  row.append(online);
  if (entry.status && entry.status.error_message) row.append(el("td", entry.status.error_message, "error"));
  return row;
}

function modelCard(name, status, series) {
  const card = el("div", null, "model");
  card.dataset.model = name;
  card.append(el("h3", name));
  const table = el("table");
  const head = el("tr");
  for (const title of ["version", "state", "runtime", "stage 1 test acc.", "stage 2 test acc.", "online acc. (n)"]) {
    head.append(el("th", title));
  }
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const entry of status.model_version_status) table.tBodies[0].append(versionRow(name, entry, series));
  card.append(table);
  return card;
}

async function refreshModels() {
  try {
    const [ready, metricsText] = await Promise.all([
      fetch("/readyz").then((r) => r.json()), call("/metrics")]);
    const series = parseMetrics(metricsText);
    const names = Object.keys(ready.models);
    const cards = await Promise.all(names.map(async (name) =>
      modelCard(name, await call(`/v1/models/${encodeURIComponent(name)}`), series)));
    $("model-list").replaceChildren(...cards);
    fillModelSelect(names);
    $("models-error").hidden = true;
  } catch (error) {
    $("models-error").textContent = `Could not read the models: ${error.message}`;
    $("models-error").hidden = false;
  }
}

function fillModelSelect(names) {
  const select = $("model-select");
  if (select.options.length === names.length) return;
  select.replaceChildren(...names.map((name) => el("option", name)));
}

// ---- classify ----------------------------------------------------------------------------------
const BARS = 5;

async function classify(file) {
  $("classify-error").hidden = true;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  const model = encodeURIComponent($("model-select").value);
  try {
    // top_k large enough for every class: the bars show the first few, the label list all.
    const answer = await call(`/v1/models/${model}:classify_image?top_k=1000`, {
      method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
    showAnswer(answer);
  } catch (error) {
    $("answer").hidden = true;
    $("classify-error").textContent = error.message;
    $("classify-error").hidden = false;
  }
}

function showAnswer(answer) {
  state.answer = answer;
  $("answer-version").textContent = answer.version;
  $("answer-id").textContent = answer.prediction_id;
  $("bars").replaceChildren(...answer.predictions.slice(0, BARS).map(bar));
  const labels = [...answer.predictions].map((p) => p.label).sort();
  $("true-label").replaceChildren(...labels.map((label) => el("option", label)));
  $("true-label").value = answer.predictions[0].label;
  $("feedback-result").textContent = "";
  $("answer").hidden = false;
}

function bar(prediction) {
  const item = el("li");
  item.dataset.label = prediction.label;
  const track = el("span", null, "track"), fill = el("span", null, "fill");
  fill.style.width = `${Math.max(0, Math.min(1, prediction.score)) * 100}%`;
  fill.style.display = "block";
  track.append(fill);
  item.append(el("span", prediction.label, "label"), track, el("span", prediction.score.toFixed(3), "score"));
  return item;
}

async function sendFeedback(event) {
  event.preventDefault();
  const answer = state.answer;
  try {
    const done = await call(`/v1/models/${encodeURIComponent(answer.model)}:feedback`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prediction_id: answer.prediction_id, label: $("true-label").value }) });
    $("feedback-result").textContent = done.correct ? "recorded: the model was right" : "recorded: the model was wrong";
    await refreshModels();
  } catch (error) {
    $("feedback-result").textContent = error.message;
  }
}

// ---- retrain (only with a token) ---------------------------------------------------------------
function adminHeaders() {
  return { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" };
}

async function unlock(event) {
  event.preventDefault();
  state.token = $("token").value.trim();
  $("token").value = "";
  try {
    await refreshJobs();
    $("retrain").hidden = false;
    $("unlock-result").textContent = "unlocked";
  } catch (error) {
    state.token = null;
    $("retrain").hidden = true;
    $("unlock-result").textContent = error.message;
  }
}

async function refreshJobs() {
  const list = await call("/v1/jobs", { headers: adminHeaders() });
  $("jobs").tBodies[0].replaceChildren(...list.jobs.map((job) => {
    const row = el("tr");
    row.append(el("td", job.id), el("td", job.model), el("td", job.state), el("td", job.created_at),
               el("td", job.produced_version ?? "–"));
    return row;
  }));
}

async function retrain(event) {
  event.preventDefault();
  const body = { data: $("retrain-data").value, epochs: Number($("retrain-epochs").value) };
  try {
    const accepted = await call(`/v1/models/${encodeURIComponent($("model-select").value)}:retrain`, {
      method: "POST", headers: adminHeaders(), body: JSON.stringify(body) });
    $("retrain-result").textContent = `job ${accepted.job_id} submitted`;
    await refreshJobs();
  } catch (error) {
    $("retrain-result").textContent = error.message;
  }
}

// ---- wiring ------------------------------------------------------------------------------------
function wireDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) classify(event.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", () => { if ($("file").files.length) classify($("file").files[0]); });
}

document.addEventListener("DOMContentLoaded", () => {
  wireDrop();
  $("feedback").addEventListener("submit", sendFeedback);
  $("unlock").addEventListener("submit", unlock);
  $("retrain-form").addEventListener("submit", retrain);
  refreshModels();
  setInterval(refreshModels, 10000);
});
