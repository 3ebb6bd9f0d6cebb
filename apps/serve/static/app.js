// edge chat: a small offline client of this server's OpenAI API (no libraries, no network beyond it).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, history: [], pending: [], controller: null, recorder: null };

function status(text) { $("status").textContent = text || ""; }

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    state.model = body.data[0].id;
    $("model").textContent = state.model;
  } catch (e) { $("model").textContent = "(" + e.message + ")"; }
}

function bubble(role, parts) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  for (const p of parts) {
    if (p.type === "image_url") {
      const img = document.createElement("img");
      img.src = p.image_url.url;
      div.appendChild(img);
    } else if (p.type === "input_audio") {
      div.appendChild(document.createTextNode("[spoken message] "));
    } else if (p.type === "text") {
      div.appendChild(document.createTextNode(p.text));
    }
  }
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// --- attachments --------------------------------------------------------------------------
function addAttachment(part, label) {
  state.pending.push(part);
  const tag = document.createElement("span");
  tag.title = "Click to remove";
  if (part.type === "image_url") {
    const img = document.createElement("img");
    img.src = part.image_url.url;
    tag.appendChild(img);
  } else { tag.textContent = label; }
  tag.onclick = () => { state.pending.splice(state.pending.indexOf(part), 1); tag.remove(); };
  $("attachments").appendChild(tag);
}

function readAsDataURL(file) {
  return new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result);
    r.onerror = () => fail(r.error);
    r.readAsDataURL(file);
  });
}

$("file").onchange = async (e) => {
  for (const f of e.target.files) addAttachment({ type: "image_url", image_url: { url: await readAsDataURL(f) } });
  e.target.value = "";
};

$("camera-open").onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("video").srcObject = stream;
    $("camera").hidden = false;
  } catch (e) { status("camera: " + e.message); }
};

function closeCamera() {
  const s = $("video").srcObject;
  if (s) s.getTracks().forEach((t) => t.stop());
  $("video").srcObject = null;
  $("camera").hidden = true;
}
$("camera-close").onclick = closeCamera;
$("snap").onclick = () => {
  const v = $("video");
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  addAttachment({ type: "image_url", image_url: { url: c.toDataURL("image/jpeg", 0.9) } });
  closeCamera();
};

// --- microphone: raw samples -> 16-bit PCM WAV -> base64 input_audio ----------------------
function wav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) buf.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); buf.setUint32(4, 36 + 2 * n, true); text(8, "WAVEfmt ");
  buf.setUint32(16, 16, true); buf.setUint16(20, 1, true); buf.setUint16(22, 1, true);
  buf.setUint32(24, rate, true); buf.setUint32(28, 2 * rate, true); buf.setUint16(32, 2, true);
  buf.setUint16(34, 16, true); text(36, "data"); buf.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (const x of c) { buf.setInt16(o, Math.max(-1, Math.min(1, x)) * 32767, true); o += 2; }
  return new Uint8Array(buf.buffer);
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// The microphone as mono float32 chunks at the audio context's rate (the chat's and live mode's recorder).
async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const ctx = new AudioContext();
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  ctx.createMediaStreamSource(stream).connect(node);
  node.connect(ctx.destination);
  return { stream, ctx, node, chunks };
}

// Stop a recorder of startRecording: its chunks and their sample rate.
async function stopRecording(rec) {
  rec.node.disconnect(); rec.stream.getTracks().forEach((t) => t.stop());
  const rate = rec.ctx.sampleRate;
  await rec.ctx.close();
  return { chunks: rec.chunks, rate };
}

$("mic").onclick = async () => {
  if (state.recorder) {  // stop recording
    const rec = state.recorder;
    state.recorder = null;
    const { chunks, rate } = await stopRecording(rec);
    $("mic").classList.remove("recording"); $("mic").textContent = "Record";
    const seconds = chunks.reduce((a, c) => a + c.length, 0) / rate;
    addAttachment({ type: "input_audio", input_audio: { data: base64(wav(chunks, rate)), format: "wav" } },
      "audio " + seconds.toFixed(1) + " s");
    return;
  }
  try {
    state.recorder = await startRecording();
    $("mic").classList.add("recording"); $("mic").textContent = "Stop recording";
  } catch (e) { status("microphone: " + e.message); }
};

// --- sending and streaming ----------------------------------------------------------------
function showTimings(div, t, usage, ttftClient) {
  const line = document.createElement("div");
  line.className = "timings";
  const bits = [];
  if (t) {
    bits.push("TTFT " + Math.round(t.ttft_ms) + " ms", t.decode_tokens_per_s.toFixed(1) + " tok/s");
    if (t.images) bits.push(t.image_tokens + " image tokens", "image cache " + t.cache_hits + " hits");
  } else if (ttftClient !== null) bits.push("TTFT " + Math.round(ttftClient) + " ms");
  if (usage) {
    bits.push(usage.prompt_tokens + " prompt tokens (" + usage.prompt_tokens_details.cached_tokens + " cached)",
      usage.completion_tokens + " generated");
  }
  line.textContent = bits.join(" · ");
  div.appendChild(line);
}

async function send(text) {
  const content = state.pending.slice();
  if (text) content.push({ type: "text", text });
  if (!content.length) return;
  state.pending = []; $("attachments").innerHTML = "";
  const user = { role: "user", content };
  bubble("user", content);
  const div = bubble("assistant", []);
  const answer = document.createElement("span");
  answer.className = "answer";
  div.appendChild(answer);
  state.controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  const t0 = performance.now();
  let ttft = null, usage = null, timings = null, reply = "";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: state.controller.signal,
      body: JSON.stringify({ model: state.model, messages: state.history.concat([user]), stream: true,
        max_tokens: parseInt($("max-tokens").value, 10) || undefined, stream_options: { include_usage: true } }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : r.status + " " + r.statusText);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) { usage = chunk.usage; timings = chunk.timings; }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (ttft === null) ttft = performance.now() - t0;
          reply += delta.content;
          answer.textContent = reply;
          div.scrollIntoView({ block: "end" });
        }
      }
    }
    showTimings(div, timings, usage, ttft);
  } catch (e) {
    if (e.name === "AbortError") showTimings(div, null, null, ttft);
    else { div.classList.add("error"); answer.textContent = reply + (reply ? "\n" : "") + "error: " + e.message; }
  } finally {
    state.controller = null;
    $("send").disabled = false; $("stop").disabled = true;
  }
  if (!div.classList.contains("error")) {
    state.history.push(user, { role: "assistant", content: reply });
    div.dataset.done = "1";
  }
}

$("composer").onsubmit = (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  $("prompt").value = "";
  send(text);
};
$("prompt").onkeydown = (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
};
$("stop").onclick = () => { if (state.controller) state.controller.abort(); };
$("reset").onclick = () => {
  if (state.controller) state.controller.abort();
  state.history = []; state.pending = [];
  $("messages").innerHTML = ""; $("attachments").innerHTML = ""; status("new conversation");
};
$("key").onchange = loadModel;
loadModel();
