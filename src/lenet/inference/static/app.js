// The page's whole logic: send an image to POST /predict, draw what comes back, in English or Chinese.
// Uploads, drawings and sample clicks all go the same way, as image files, so the server
// prepares every one of them with the same code as `lenet predict`.
"use strict";

const $ = (id) => document.getElementById(id);

// --- the page's words, in both languages ---
const TEXT = {
  en: {
    title: "lenet: try the model",
    give: "Give it an image",
    drop: "Drop an image here, or choose an image file",
    draw: "Or draw one",
    drawHint: "Draw one piece of clothing as a filled silhouette, as the Fashion-MNIST images are: " +
      "a shoe, a bag, a shirt, its shape filled in rather than outlined. It is classified when you pause.",
    classify: "Classify drawing",
    clear: "Clear",
    samples: "Or pick a test image",
    sample: "Test image {index}: {label}",
    sees: "What the model sees",
    seenLabel: "The 28x28 image the model sees",
    prediction: "Prediction:",
    none: "none yet",
    truth: "True class:",
    right: "(right)",
    wrong: "(wrong)",
    probabilities: "Probability of each class",
    failed: "Could not classify {name}: {error}",
    unreachable: "Could not reach the server: {error}",
    model: "{name} on {data}: {parameters} parameters",
    accuracy: ", {accuracy}% test accuracy",
    drawing: "your drawing",
  },
  zh: {
    title: "lenet：试一试模型",
    give: "给它一张图片",
    drop: "把图片拖到这里，或选择一个图片文件",
    draw: "或者画一个",
    drawHint: "像 Fashion-MNIST 的图片那样，画一件衣物的实心剪影：一只鞋、一个包、一件衬衫，" +
      "把整个形状涂满，而不是只画轮廓。停笔片刻后自动识别。",
    classify: "识别画作",
    clear: "清除",
    samples: "或者选一张测试图片",
    sample: "测试图片 {index}：{label}",
    sees: "模型看到的图像",
    seenLabel: "模型看到的 28×28 图像",
    prediction: "预测：",
    none: "暂无",
    truth: "真实类别：",
    right: "（正确）",
    wrong: "（错误）",
    probabilities: "各类别的概率",
    failed: "无法识别 {name}：{error}",
    unreachable: "无法连接服务器：{error}",
    model: "{name}，在 {data} 上训练：{parameters} 个参数",
    accuracy: "，测试准确率 {accuracy}%",
    drawing: "你的画作",
  },
};
// Chinese names for the classes this page knows; a model of another data set keeps its own names.
const CLASS_NAMES = {
  zh: {
    "T-shirt/top": "T恤/上衣", Trouser: "裤子", Pullover: "套头衫", Dress: "连衣裙", Coat: "外套",
    Sandal: "凉鞋", Shirt: "衬衫", Sneaker: "运动鞋", Bag: "包", "Ankle boot": "短靴",
  },
};

let language = pickLanguage();
function pickLanguage() {
  const chosen = remembered();
  if (chosen in TEXT) return chosen;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const primary = tag.toLowerCase().split("-")[0];
    if (primary in TEXT) return primary;
  }
  return "en";
}
// The switch's choice outlives a reload; storage may be off (private windows), and then it does not.
function remembered(value) {
  try {
    if (value === undefined) return localStorage.getItem("lenet-language");
    localStorage.setItem("lenet-language", value);
  } catch {
    return null;
  }
}
function t(key, values = {}) {
  return TEXT[language][key].replace(/\{(\w+)\}/g, (_, name) => values[name]);
}
function className(name) {
  return CLASS_NAMES[language]?.[name] ?? name;
}

// --- what is on screen, kept so that a change of language can draw it again ---
const state = { model: null, samples: [], prediction: null, truth: null, error: null };
let latest = 0; // only the answer to the newest request is shown

// `describe` names the image in the current language (for an error message); `truth` is its class, when known.
async function classify(blob, describe, truth = null) {
  const request = ++latest;
  const form = new FormData();
  const name = describe();
  form.append("files", blob, name);
  try {
    const response = await fetch("/predict?top_k=10&pixels=true", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : body.detail.map((d) => d.msg).join("; ");
      throw new Error(detail.startsWith(`${name}: `) ? detail.slice(name.length + 2) : detail); // said once, not twice
    }
    if (request !== latest) return;
    Object.assign(state, { prediction: body.predictions[0], truth, error: null });
  } catch (error) {
    if (request !== latest) return;
    // Nothing of the image before stays on screen beside the error.
    Object.assign(state, { prediction: null, truth: null, error: { key: "failed", describe, message: error.message } });
  }
  render();
}

function render() {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-t-label]")) node.setAttribute("aria-label", t(node.dataset.tLabel));
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", button.dataset.lang === language);
  renderModel();
  renderSamples();
  renderAnswer();
}

function renderModel() {
  const model = state.model;
  if (!model) return;
  const parameters = model.parameters.toLocaleString(language === "zh" ? "zh-CN" : "en");
  const accuracy = model.test_accuracy == null ? "" : t("accuracy", { accuracy: (100 * model.test_accuracy).toFixed(2) });
  $("model").textContent = t("model", { name: model.name ?? "LeNet", data: model.data_set ?? "Fashion-MNIST", parameters }) + accuracy;
}

function renderSamples() {
  for (const button of $("samples").querySelectorAll("button")) {
    const text = t("sample", { index: button.dataset.index, label: className(button.dataset.label) });
    const img = button.querySelector("img");
    img.alt = button.title = text;
  }
}

function renderAnswer() {
  const { prediction, truth, error } = state;
  const label = $("label");
  label.textContent = prediction ? className(prediction.label) : t("none");
  label.dataset.class = prediction ? prediction.label : "";
  $("truth").hidden = !(prediction && truth);
  if (prediction && truth) {
    $("true-label").textContent = className(truth);
    $("true-label").dataset.class = truth;
    $("verdict").textContent = t(truth === prediction.label ? "right" : "wrong");
  }
  drawPixels(prediction?.pixels);
  drawBars(prediction);
  $("status").textContent = error ? t(error.key, { name: error.describe?.(), error: error.message }) : "";
}

function drawBars(prediction) {
  const bars = $("bars");
  bars.replaceChildren();
  if (!prediction) return;
  // Class order, not probability order, so the bars stay put from one image to the next.
  const byClass = new Map(prediction.top.map((top) => [top.class, top.probability]));
  for (const name of state.model?.classes ?? [...byClass.keys()]) {
    const p = byClass.get(name) ?? 0;
    const row = document.createElement("div");
    row.setAttribute("role", "listitem");
    const label = document.createElement("span");
    label.textContent = className(name);
    if (name === prediction.label) label.className = "top";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(label, bar, value);
    bars.append(row);
  }
}

function drawPixels(pixels) {
  const seen = $("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  image.data.fill(0);
  (pixels ?? []).flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  if (!pixels) for (let i = 3; i < image.data.length; i += 4) image.data[i] = 255;
  seen.putImageData(image, 0, 0);
}

// --- the language switch ---
for (const button of document.querySelectorAll("[data-lang]")) {
  button.addEventListener("click", () => {
    language = button.dataset.lang;
    remembered(language);
    render();
  });
}

// --- uploads and drag and drop ---
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) classify(file, () => file.name);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) classify(file, () => file.name);
});

// --- drawing: dark strokes on white, like pen on paper; the server inverts it as it would a photo ---
const PAUSE_MS = 700; // a drawing is classified once the pen has rested this long, not after every stroke
const canvas = $("draw");
const pen = canvas.getContext("2d");
function clearCanvas() {
  clearTimeout(pause);
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
}
let pause = 0;
clearCanvas();
pen.lineWidth = 22;
pen.lineCap = pen.lineJoin = "round";
pen.strokeStyle = "#000";
let drawing = false;
function point(e) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * (canvas.width / box.width), (e.clientY - box.top) * (canvas.height / box.height)];
}
canvas.addEventListener("pointerdown", (e) => {
  clearTimeout(pause);
  drawing = true;
  canvas.setPointerCapture(e.pointerId);
  pen.beginPath();
  pen.moveTo(...point(e));
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  pen.lineTo(...point(e));
  pen.stroke();
});
canvas.addEventListener("pointerup", () => {
  if (!drawing) return;
  drawing = false;
  pause = setTimeout(classifyDrawing, PAUSE_MS);
});
function classifyDrawing() {
  clearTimeout(pause);
  canvas.toBlob((blob) => classify(blob, () => t("drawing")), "image/png");
}
$("classify").addEventListener("click", classifyDrawing);
$("clear").addEventListener("click", clearCanvas);

// --- the model and the sample row ---
async function start() {
  state.model = await (await fetch("/model")).json();
  state.samples = await (await fetch("/samples")).json();
  for (const sample of state.samples) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.dataset.index = sample.index;
    button.dataset.label = sample.label;
    const img = document.createElement("img");
    img.src = sample.url;
    img.width = img.height = 28;
    button.append(img);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(sample.url)).blob();
      classify(blob, () => t("sample", { index: sample.index, label: className(sample.label) }), sample.label);
    });
    item.append(button);
    $("samples").append(item);
  }
  render();
}
render();
start().catch((error) => {
  state.error = { key: "unreachable", message: error.message };
  renderAnswer();
});
