// The page's whole logic: send an image to POST /predict, draw what comes back.
// Uploads, drawings and sample clicks all go the same way, as image files, so the server
// prepares every one of them with the same code as `lenet predict`.
"use strict";

const $ = (id) => document.getElementById(id);

async function classify(blob, name) {
  const form = new FormData();
  form.append("files", blob, name);
  $("status").textContent = "";
  try {
    const response = await fetch("/predict?top_k=10&pixels=true", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    show(body.predictions[0]);
  } catch (error) {
    $("status").textContent = `Could not classify ${name}: ${error.message}`;
  }
}

function show(prediction) {
  $("label").textContent = prediction.label;
  drawPixels(prediction.pixels);
  const bars = $("bars");
  bars.replaceChildren();
  // Class order, not probability order, so the bars stay put from one image to the next.
  const byClass = new Map(prediction.top.map((t) => [t.class, t.probability]));
  for (const name of classes) {
    const p = byClass.get(name) ?? 0;
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    if (name === prediction.label) label.className = "top";
    bars.append(label, bar, value);
  }
}

function drawPixels(pixels) {
  const seen = $("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(image, 0, 0);
}

// --- uploads and drag and drop ---
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) classify(file, file.name);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) classify(file, file.name);
});

// --- drawing: dark strokes on white, like pen on paper; the server inverts it as it would a photo ---
const canvas = $("draw");
const pen = canvas.getContext("2d");
function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
}
clearCanvas();
pen.lineWidth = 18;
pen.lineCap = pen.lineJoin = "round";
pen.strokeStyle = "#000";
let drawing = false;
function point(e) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * (canvas.width / box.width), (e.clientY - box.top) * (canvas.height / box.height)];
}
canvas.addEventListener("pointerdown", (e) => {
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
  classifyDrawing();
});
function classifyDrawing() {
  canvas.toBlob((blob) => classify(blob, "drawing.png"), "image/png");
}
$("classify").addEventListener("click", classifyDrawing);
$("clear").addEventListener("click", clearCanvas);

// --- the model and the sample row ---
let classes = [];
async function start() {
  const model = await (await fetch("/model")).json();
  classes = model.classes;
  const accuracy = model.test_accuracy == null ? "" : `, ${(100 * model.test_accuracy).toFixed(2)}% test accuracy`;
  $("model").textContent = `${model.name ?? "LeNet"} on Fashion-MNIST: ${model.parameters.toLocaleString("en")} parameters${accuracy}`;
  const samples = await (await fetch("/samples")).json();
  for (const sample of samples) {
    const img = document.createElement("img");
    img.src = sample.url;
    img.alt = img.title = `test image ${sample.index}: ${sample.label}`;
    img.dataset.label = sample.label;
    img.addEventListener("click", async () => classify(await (await fetch(sample.url)).blob(), `test image ${sample.index}`));
    $("samples").append(img);
  }
}
start().catch((error) => { $("status").textContent = `Could not reach the server: ${error.message}`; });
