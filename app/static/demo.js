// LGM-Pose browser demo: <video> (webcam or file) -> canvas -> JPEG -> WS /ws/pose -> skeletons on a canvas.
// One frame in flight at a time: the next frame is grabbed only when the previous answer arrived, so the
// client never queues stale frames (latest wins), and the server keeps only the newest one too.
"use strict";

const video = document.getElementById("video");
const overlay = document.getElementById("overlay");
const statsEl = document.getElementById("stats");
const grab = document.createElement("canvas");
const MAX_SIDE = 640;
const COLORS = ["#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500", "#5ac8fa", "#ff2d55"];

const stats = { connected: false, framesSent: 0, messages: 0, poseMessages: 0, errors: 0, personsDrawn: 0,
  lastPersons: 0, keypointsDrawn: 0, dropped: 0, fps: 0, latencyMs: 0, serverLatencyMs: 0, source: "" };
window.demoStats = stats;

let ws = null;
let skeleton = [];
let inFlight = false;
let frameId = 0;
const sentAt = new Map();
const answerTimes = [];

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // with an API key on the service, open the demo as /#key=<key>: a browser WebSocket offers it as the subprotocol
  // bearer.<key> beside lgm-pose, the one the server selects (it never echoes the key)
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  ws = new WebSocket(`${proto}://${location.host}/ws/pose`, key ? ["lgm-pose", `bearer.${key}`] : ["lgm-pose"]);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { stats.connected = true; sendParams(); pump(); };
  ws.onclose = (ev) => {
    stats.connected = false; inFlight = false;
    render(`closed (${ev.code}) - reconnecting`);
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
}

function sendParams() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const params = {
    smoothing: document.getElementById("smoothing").checked,
    det_conf: parseFloat(document.getElementById("det_conf").value),
    kpt_thr: parseFloat(document.getElementById("kpt_thr").value),
  };
  const source = document.getElementById("pose_source").value;
  if (source) params.pose_source = source;  // empty until the hello said which sources are served
  ws.send(JSON.stringify(params));
}

// the source switch: the sources the server serves (hello), its default selected unless one was chosen already
function fillSources(hello) {
  const select = document.getElementById("pose_source");
  const wanted = select.value || query.get("pose_source") || hello.params.pose_source;
  select.replaceChildren(...hello.pose_sources.map((s) => new Option(s, s)));
  select.value = hello.pose_sources.includes(wanted) ? wanted : hello.params.pose_source;
  if (select.value !== hello.params.pose_source) sendParams();
}

function onMessage(msg) {
  stats.messages += 1;
  if (msg.type === "hello") { skeleton = msg.skeleton; fillSources(msg); return; }
  if (msg.type === "config") return;
  if (msg.type === "error") stats.errors += 1;
  if (msg.type === "pose") {
    stats.poseMessages += 1;
    stats.serverLatencyMs = msg.latency_ms;
    stats.source = msg.source;
    draw(msg);
  }
  if (typeof msg.dropped === "number") stats.dropped += msg.dropped;
  if (msg.frame_id !== undefined && sentAt.has(msg.frame_id)) {
    const now = performance.now();
    stats.latencyMs = now - sentAt.get(msg.frame_id);
    sentAt.delete(msg.frame_id);
    answerTimes.push(now);
    while (answerTimes.length && answerTimes[0] < now - 2000) answerTimes.shift();
    stats.fps = answerTimes.length / 2;
  }
  if (msg.type === "pose" || msg.type === "error") { inFlight = false; pump(); }
  render();
}

function draw(msg) {
  const ctx = overlay.getContext("2d");
  overlay.width = video.videoWidth || msg.width;
  overlay.height = video.videoHeight || msg.height;
  const sx = overlay.width / msg.width, sy = overlay.height / msg.height;
  const thr = parseFloat(document.getElementById("kpt_thr").value) || 0;
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  ctx.lineWidth = Math.max(2, overlay.width / 320);
  for (const p of msg.persons) {
    const color = COLORS[p.track_id % COLORS.length];
    ctx.strokeStyle = color; ctx.fillStyle = color;
    const [x1, y1, x2, y2] = p.box;
    ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    ctx.font = "16px sans-serif";
    ctx.fillText(`#${p.track_id}`, x1 * sx + 3, y1 * sy + 16);
    const k = p.keypoints;
    for (const [a, b] of skeleton) {
      if (k[a][2] < thr || k[b][2] < thr) continue;
      ctx.beginPath(); ctx.moveTo(k[a][0] * sx, k[a][1] * sy); ctx.lineTo(k[b][0] * sx, k[b][1] * sy); ctx.stroke();
    }
    for (const [x, y, s] of k) {
      if (s < thr) continue;
      stats.keypointsDrawn += 1;
      ctx.beginPath(); ctx.arc(x * sx, y * sy, ctx.lineWidth * 1.5, 0, 2 * Math.PI); ctx.fill();
    }
  }
  stats.lastPersons = msg.persons.length;
  stats.personsDrawn += msg.persons.length;
}

function render(note) {
  statsEl.dataset.messages = String(stats.poseMessages);
  statsEl.dataset.persons = String(stats.lastPersons);
  statsEl.dataset.drawn = String(stats.personsDrawn);
  statsEl.dataset.keypoints = String(stats.keypointsDrawn);
  statsEl.dataset.source = stats.source;
  statsEl.textContent = (note ? note + "\n" : "") +
    `source ${stats.source || "-"}  fps ${stats.fps.toFixed(1)}  latency ${stats.latencyMs.toFixed(0)} ms (server ${stats.serverLatencyMs} ms)\n` +
    `sent ${stats.framesSent}  pose messages ${stats.poseMessages}  persons ${stats.lastPersons}  ` +
    `drawn ${stats.personsDrawn}  dropped ${stats.dropped}  errors ${stats.errors}`;
  document.title = `LGM-Pose demo: ${stats.poseMessages} messages, ${stats.personsDrawn} persons drawn`;
}

function pump() {
  if (inFlight || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (video.readyState < 2 || !video.videoWidth) { setTimeout(pump, 50); return; }
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  inFlight = true;
  grab.toBlob((blob) => {
    if (!blob || !ws || ws.readyState !== WebSocket.OPEN) { inFlight = false; setTimeout(pump, 100); return; }
    const id = ++frameId;
    sentAt.set(id, performance.now());
    if (sentAt.size > 100) sentAt.delete(sentAt.keys().next().value);
    ws.send(JSON.stringify({ frame_id: id, timestamp_ms: performance.now() }));
    ws.send(blob);
    stats.framesSent += 1;
  }, "image/jpeg", 0.8);
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    video.srcObject = stream;
    await video.play();
    pump();
  } catch (err) {
    render(`camera unavailable: ${err}`);
  }
}

document.getElementById("camera").onclick = startCamera;
document.getElementById("file").onchange = (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  if (video.srcObject) { video.srcObject.getTracks().forEach((t) => t.stop()); video.srcObject = null; }
  video.src = URL.createObjectURL(file);
  video.play().then(pump);
};
for (const id of ["smoothing", "det_conf", "kpt_thr", "pose_source"]) document.getElementById(id).onchange = sendParams;
video.addEventListener("playing", pump);

// ?det_conf=0.3&kpt_thr=0&smoothing=0&pose_source=fused preset the controls; ?autostart starts the camera at once
const query = new URLSearchParams(location.search);
for (const id of ["det_conf", "kpt_thr"]) if (query.has(id)) document.getElementById(id).value = query.get(id);
if (query.has("smoothing")) document.getElementById("smoothing").checked = query.get("smoothing") !== "0";
connect();
render();
if (query.has("autostart")) startCamera();
