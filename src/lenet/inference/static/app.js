// The page's whole logic: send an image to POST /predict, then to POST /layers, and draw what comes
// back (the answer, then what each layer of the network saw), in English or Chinese.
// Uploads, drawings and sample clicks all go the same way, as image files, so the server
// prepares every one of them with the same code as `lenet predict`.
"use strict";

const $ = (id) => document.getElementById(id);

// --- the page's words, in both languages ---
const TEXT = {
  en: {
    title: "lenet: try the model",
    give: "Give it an image",
    // What the model knows, from GET /model's data set (see dataKind): the first line under "Give it an image".
    giveFashion: "It tells apart ten kinds of clothing: {classes}.",
    giveDigits: "It tells apart the ten handwritten digits, 0 to 9.",
    giveKana: "It tells apart ten cursive hiragana (Kuzushiji-MNIST): {classes}.",
    giveOwn: "It was trained on your own images ({data}). Upload an image of one of: {classes}.",
    givePhotos: "It tells apart ten kinds of small colour photos (CIFAR-10): {classes}.",
    drop: "Drop an image here, or choose an image file",
    draw: "Or draw one",
    drawFashion: "Draw one piece of clothing as a filled silhouette, as the Fashion-MNIST images are: " +
      "a shoe, a bag, a shirt, its shape filled in rather than outlined. It is classified when you pause.",
    drawDigits: "Draw one digit, 0 to 9, large and in a thick stroke, as the MNIST digits are. " +
      "It is classified when you pause.",
    drawKana: "Draw one of these hiragana, large and in thick strokes: {classes}. It is classified when you pause.",
    drawOwn: "Draw one of: {classes}. The model learned from your images only, so it reads a drawing well only " +
      "as far as the drawing looks like them. It is classified when you pause.",
    drawOpen: "Draw one instead",
    drawClose: "Hide the drawing",
    classify: "Classify drawing",
    clear: "Clear",
    samples: "Or pick a test image",
    sample: "Test image {index}: {label}",
    sees: "What the model sees",
    seenLabel: "The {side}x{side} image the model sees",
    prediction: "Prediction:",
    none: "none yet",
    truth: "True class:",
    right: "(right)",
    wrong: "(wrong)",
    probabilities: "Probability of each class",
    // The server's refusals, by their `code` (docs/serving.md); any other code: `failed`, with the server's English.
    not_an_image: "{name} is not an image this page can read: send a PNG, JPEG, GIF, BMP or WebP file.",
    damaged_image: "{name} could not be decoded: the image file may be damaged or cut short.",
    empty_file: "{name} is an empty file (0 bytes).",
    empty_image: "{name} is an image with no pixels.",
    image_too_large: "{name} has more pixels than this server reads in one image. Send a smaller one.",
    too_many_pixels: "{name} has more pixels than this server reads in one request. Send a smaller one.",
    body_too_large: "{name} is a larger file than this server takes. Send a smaller one.",
    too_many_images: "Too many images at once: send at most 64.",
    failed: "Could not classify {name}. The server said: {error}",
    unreachable: "Could not reach the server ({error}).",
    model: "{name} on {data}: {parameters} parameters",
    accuracy: ", {accuracy}% test accuracy",
    drawing: "your drawing",
    layersTitle: "What each layer sees",
    layersNone: "Give the model an image, and this shows what each layer of the network makes of it.",
    layersHint: "One pass of the network over the {side}x{side} image above. Brighter is a stronger response; " +
      "each map is on its own scale.",
    conv: "Convolution {block} ({kind}): {shown} feature maps of {height}x{width}",
    convSome: "Convolution {block} ({kind}): the first {shown} of {total} feature maps, {height}x{width}",
    hidden: "Fully connected layer {index} ({kind}): {units} units",
    output: "Output of this pass: {label}, {probability}%",
    outputViews: "Output of this pass: {label}, {probability}%. The prediction above averages {views} views of the image.",
  },
  zh: {
    title: "lenet：试一试模型",
    give: "给模型一张图片",
    giveFashion: "它能分辨十类衣物：{classes}。",
    giveDigits: "它能分辨 0 到 9 这十个手写数字。",
    giveKana: "它能分辨十个草书平假名（Kuzushiji-MNIST）：{classes}。",
    giveOwn: "它是用你自己的图片（{data}）训练的。请上传一张属于以下某一类的图片：{classes}。",
    givePhotos: "它能分辨十类彩色小照片（CIFAR-10）：{classes}。",
    drop: "把图片拖到这里，或者选择一个图片文件",
    draw: "或者画一张",
    drawFashion: "照 Fashion-MNIST 图片的样子，画一件衣物的实心剪影，比如一只鞋、一个包、一件衬衫：" +
      "把整个形状涂满，不要只勾轮廓。停笔片刻后会自动识别。",
    drawDigits: "照 MNIST 的样子写一个数字（0 到 9），写大一些，笔画粗一些。停笔片刻后会自动识别。",
    drawKana: "写下其中一个平假名，写大一些，笔画粗一些：{classes}。停笔片刻后会自动识别。",
    drawOwn: "画出其中一类：{classes}。模型只从你的图片里学过，画得越像那些图片，它认得越准。停笔片刻后会自动识别。",
    drawOpen: "改为手绘一张",
    drawClose: "收起画板",
    classify: "识别这幅画",
    clear: "清空",
    samples: "或者选一张测试图片",
    sample: "测试图片 {index}：{label}",
    sees: "模型看到的图像",
    seenLabel: "模型看到的 {side}×{side} 图像",
    prediction: "预测结果：",
    none: "暂无",
    truth: "真实类别：",
    right: "（预测正确）",
    wrong: "（预测错误）",
    probabilities: "各类别的概率",
    not_an_image: "{name} 不是本页能读取的图片，请上传 PNG、JPEG、GIF、BMP 或 WebP 文件。",
    damaged_image: "无法解码 {name}：图片文件可能已损坏或不完整。",
    empty_file: "{name} 是空文件（0 字节）。",
    empty_image: "{name} 这张图片没有任何像素。",
    image_too_large: "{name} 的像素太多，超过了服务器对单张图片的上限，请换一张小一些的图片。",
    too_many_pixels: "{name} 的像素太多，超过了服务器对单次请求的上限，请换一张小一些的图片。",
    body_too_large: "{name} 文件太大，超过了服务器能接收的大小，请换一个小一些的文件。",
    too_many_images: "一次发送的图片太多，最多 64 张。",
    failed: "无法识别 {name}。服务器的答复（英文）：{error}",
    unreachable: "无法连接服务器（浏览器报告：{error}）。",
    model: "{name}，在 {data} 上训练，共 {parameters} 个参数",
    accuracy: "，测试准确率 {accuracy}%",
    drawing: "你画的图",
    layersTitle: "每一层看到了什么",
    layersNone: "给模型一张图片，这里就会显示网络的每一层如何处理它。",
    layersHint: "这是网络对上面这张 {side}×{side} 图像做的一次前向传播。颜色越亮，响应越强；每张特征图的颜色刻度各自独立。",
    conv: "第 {block} 个卷积层（{kind}）：{shown} 张 {height}×{width} 的特征图",
    convSome: "第 {block} 个卷积层（{kind}）：{total} 张特征图中的前 {shown} 张，{height}×{width}",
    hidden: "第 {index} 个全连接层（{kind}）：{units} 个单元",
    output: "这次前向传播的输出：{label}，{probability}%",
    outputViews: "这次前向传播的输出：{label}，{probability}%。上面的预测结果是这张图像 {views} 个视图的平均。",
  },
};
// Chinese names for the classes this page knows; a model of another data set keeps its own names.
const CLASS_NAMES = {
  zh: {
    "T-shirt/top": "T恤/上衣", Trouser: "裤子", Pullover: "套头衫", Dress: "连衣裙", Coat: "外套",
    Sandal: "凉鞋", Shirt: "衬衫", Sneaker: "运动鞋", Bag: "包", "Ankle boot": "短靴",
    airplane: "飞机", automobile: "汽车", bird: "鸟", cat: "猫", deer: "鹿", dog: "狗", frog: "青蛙", horse: "马",
    ship: "船", truck: "卡车",
  },
};
// Kuzushiji-MNIST's classes are romanised; the hints show each kana beside its name.
const KANA = { o: "お", ki: "き", su: "す", tsu: "つ", na: "な", ha: "は", ma: "ま", ya: "や", re: "れ", wo: "を" };

// What the model was trained on, from GET /model, decides the hints and whether the drawing is offered:
// the grey registry data sets are drawn in (a pen stroke looks like their images); a user's own folder or CSV
// may be photos of anything, so its page offers upload, and drawing only when asked for (docs/serving.md).
// A colour model is never offered the drawing: a black pen stroke on white is nothing like a colour photo.
function dataKind(model) {
  if (!model) return null;
  return { "fashion-mnist": "fashion", mnist: "digits", kmnist: "kana", cifar10: "photos" }[model.data_set] ?? "own";
}
const KIND_KEYS = { fashion: "Fashion", digits: "Digits", kana: "Kana", own: "Own", photos: "Photos" };
// The image the model takes, from GET /model: its side S, and whether it is in colour (3 channels).
const GREY_SIDE = 28; // a server of before GET /model named its input took Fashion-MNIST's 28x28 grey images
function side() {
  return state.model?.image_size ?? GREY_SIDE;
}
function inColour() {
  return state.model?.channels === 3;
}

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
// The model's classes as a list in a sentence: "a, b, c" or "a、b、c".
function classList() {
  const kind = dataKind(state.model);
  const names = (state.model?.classes ?? []).map((name) => (kind === "kana" && KANA[name] ? `${KANA[name]} (${name})` : className(name)));
  return names.join(language === "zh" ? "、" : ", ");
}
// The refusals the page words itself, by the server's `code`; the others are shown with the server's English.
const REFUSALS = ["not_an_image", "damaged_image", "empty_file", "empty_image", "image_too_large", "too_many_pixels",
  "body_too_large", "too_many_images"];

// --- what is on screen, kept so that a change of language can draw it again ---
const state = { model: null, samples: [], prediction: null, layers: null, truth: null, error: null, drawAsked: false };
let latest = 0; // only the answer to the newest request is shown

// `describe` names the image in the current language (for an error message); `truth` is its class, when known.
async function classify(blob, describe, truth = null) {
  const request = ++latest;
  const name = describe();
  try {
    // Every class's probability: top_k is bounded by the model's classes (a folder data set may have 3).
    const body = await post(`/predict?top_k=${state.model?.classes?.length ?? 10}&pixels=true`, blob, name);
    if (request !== latest) return;
    Object.assign(state, { prediction: body.predictions[0], layers: null, truth, error: null });
  } catch (error) {
    if (request !== latest) return;
    // Nothing of the image before stays on screen beside the error.
    Object.assign(state, { prediction: null, layers: null, truth: null,
      error: { key: "failed", describe, message: error.message, code: error.code } });
    render();
    reveal($("status"));
    return;
  }
  render();
  reveal($("answer"));
  // What each layer saw, once the answer is on screen: the same image, one pass of the network.
  try {
    const layers = await post("/layers", blob, name);
    if (request !== latest) return;
    state.layers = layers;
  } catch {
    if (request !== latest) return;
    state.layers = null;
  }
  renderLayers();
}

// On a narrow screen the answer sits far below the inputs: brought into view when it comes, unless it is
// in view already (side by side on a wide screen), and without smooth scrolling for those who ask for less motion.
function reveal(node) {
  const box = node.getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= window.innerHeight) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  document.querySelector(".result").scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
}

// An image file to one of the image endpoints; its JSON answer, or an Error with the server's reason.
async function post(path, blob, name) {
  const form = new FormData();
  form.append("files", blob, name);
  const response = await fetch(path, { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : body.detail.map((d) => d.msg).join("; ");
    const error = new Error(detail.startsWith(`${name}: `) ? detail.slice(name.length + 2) : detail); // said once, not twice
    error.code = body.code; // the page's own words for it, in its language (REFUSALS)
    throw error;
  }
  return body;
}

function render() {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  const shape = { side: side() };
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t, shape);
  for (const node of document.querySelectorAll("[data-t-label]")) node.setAttribute("aria-label", t(node.dataset.tLabel, shape));
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", button.dataset.lang === language);
  renderModel();
  renderInputs();
  renderSamples();
  renderAnswer();
  renderLayers();
}

function renderModel() {
  const model = state.model;
  if (!model) return;
  const parameters = model.parameters.toLocaleString(language === "zh" ? "zh-CN" : "en");
  const accuracy = model.test_accuracy == null ? "" : t("accuracy", { accuracy: (100 * model.test_accuracy).toFixed(2) });
  $("model").textContent = t("model", { name: model.name ?? "LeNet", data: model.data_set ?? "Fashion-MNIST", parameters }) + accuracy;
}

// The hints and the drawing follow what the model knows (dataKind); nothing of them before GET /model answers.
function renderInputs() {
  const kind = dataKind(state.model);
  const values = { classes: classList(), data: state.model?.data_set ?? "" };
  $("give-hint").hidden = !kind;
  $("give-hint").textContent = kind ? t(`give${KIND_KEYS[kind]}`, values) : "";
  $("draw-hint").textContent = kind ? t(`draw${KIND_KEYS[kind]}`, values) : "";
  const asked = kind === "own" && !inColour();
  $("draw-open").hidden = !asked;
  $("draw-open").textContent = t(state.drawAsked ? "drawClose" : "drawOpen");
  $("draw-open").setAttribute("aria-expanded", state.drawAsked);
  $("draw-part").hidden = !kind || inColour() || (asked && !state.drawAsked);
  $("samples-part").hidden = state.samples.length === 0;
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
  const key = error && REFUSALS.includes(error.code) ? error.code : error?.key;
  $("status").textContent = error ? t(key, { name: error.describe?.(), error: error.message }) : "";
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

// The model's input as the server sent it: S rows of S grey values, or of [r, g, b] for a colour model.
function drawPixels(pixels) {
  const canvas = $("seen");
  canvas.width = canvas.height = side(); // a new size clears the canvas too
  const seen = canvas.getContext("2d");
  const image = seen.createImageData(canvas.width, canvas.height);
  for (let i = 3; i < image.data.length; i += 4) image.data[i] = 255; // black, where there is no image
  (pixels ?? []).flat().forEach((v, i) => image.data.set(Array.isArray(v) ? v : [v, v, v], 4 * i));
  seen.putImageData(image, 0, 0);
}

// --- what each layer sees: feature maps as small pictures, fully connected layers as bars ---
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(x) {
  const at = Math.min(Math.max(x, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(at), VIRIDIS.length - 2);
  const f = at - i;
  return VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
}

function renderLayers() {
  const view = $("layers");
  view.replaceChildren();
  const layers = state.layers;
  $("layers-hint").textContent = t(layers ? "layersHint" : "layersNone", { side: side() });
  if (!layers) return;
  for (const block of layers.conv) view.append(convFigure(block));
  layers.hidden.forEach((layer, i) => view.append(unitsFigure(t("hidden", { index: i + 1, kind: layer.kind, units: layer.values.length }), layer.values)));
  // The class probabilities of this pass in one line: the bars above are the served prediction's.
  const top = layers.probabilities.indexOf(Math.max(...layers.probabilities));
  const count = views(state.model?.views);
  const output = document.createElement("p");
  output.id = "layers-output";
  output.className = "layer-output";
  output.textContent = t(count > 1 ? "outputViews" : "output", {
    label: className(layers.classes[top]), probability: (100 * layers.probabilities[top]).toFixed(1), views: count });
  view.append(output);
}

function views(spec) {
  return spec ? (spec.shift ? 5 : 1) * (spec.flip ? 2 : 1) : 1;
}

function figure(caption) {
  const node = document.createElement("figure");
  node.className = "layer";
  const text = document.createElement("figcaption");
  text.textContent = caption;
  node.append(text);
  return node;
}

function convFigure(block) {
  const [total, height, width] = block.shape;
  const shown = block.channels.length;
  const caption = t(shown < total ? "convSome" : "conv", { block: block.block, kind: block.kind, shown, total, height, width });
  const node = figure(caption);
  const maps = document.createElement("div");
  maps.className = `maps block${block.block}`;
  maps.setAttribute("role", "img");
  maps.setAttribute("aria-label", caption);
  block.maps.forEach((map, i) => {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.dataset.channel = block.channels[i];
    const flat = map.flat();
    const low = Math.min(...flat), high = Math.max(...flat);
    const image = canvas.getContext("2d").createImageData(width, height);
    flat.forEach((v, k) => image.data.set([...viridis(high > low ? (v - low) / (high - low) : 0), 255], 4 * k));
    canvas.getContext("2d").putImageData(image, 0, 0);
    maps.append(canvas);
  });
  node.append(maps);
  return node;
}

// One bar per unit, on a canvas that stretches to the width it is given.
function unitsFigure(caption, values) {
  const node = figure(caption);
  const canvas = document.createElement("canvas");
  canvas.className = "units";
  const step = 4;
  canvas.width = values.length * step;
  canvas.height = 64;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", caption);
  const pen = canvas.getContext("2d");
  const high = Math.max(...values.map(Math.abs), 1e-9);
  values.forEach((v, i) => {
    const h = Math.max(1, Math.round((Math.abs(v) / high) * 62));
    pen.fillStyle = v < 0 ? "#b42318" : "#2f5fc4"; // below zero (tanh, GELU) in red
    pen.fillRect(i * step, 64 - h, step - 1, h);
  });
  node.append(canvas);
  return node;
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
$("draw-open").addEventListener("click", () => {
  state.drawAsked = !state.drawAsked;
  renderInputs();
});
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
    img.width = img.height = side();
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
