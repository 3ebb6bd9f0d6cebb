// edge chat, live mode: webcam frames at a chosen rate to POST /v1/edge/live, each answer streamed.
// The server reuses every unchanged tile (and, under the reuse threshold, tiles that barely moved);
// a frame due while an answer runs is skipped, so nothing queues up (the on-busy "skip" policy).
// Spoken questions: "Ask by voice" records the microphone until it is pressed again (the end of the
// utterance, chosen by the user: no energy threshold to tune against room noise); the frame current at
// that moment goes with the WAV (as chat's input_audio) to the same route, which transcribes it with
// the server's --audio-bundle. A spoken question never gets skipped: one waits for the running answer.
"use strict";

const live = { stream: null, timer: null, busy: false, answers: 0, skipped: 0, recorder: null, spoken: null };

function liveSchedule() {
  clearInterval(live.timer);
  const every = Math.max(0.2, parseFloat($("live-every").value) || 2);
  live.timer = setInterval(liveTick, every * 1000);
  liveTick();
}

function liveGrab() {
  const v = $("live-video");
  if (!v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  return c.toDataURL("image/jpeg", 0.9);
}

async function liveEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const data = JSON.parse(event.slice(6));
      if (data.error) throw new Error(data.error.message);
      onEvent(data);
    }
  }
}

async function liveTick() {
  if (!live.stream) return;
  if (live.busy || live.spoken) { live.skipped++; return; }
  const t0 = performance.now();
  const image = liveGrab();
  if (image) await liveAsk({ image, question: $("live-question").value }, t0);
}

async function liveAsk(request, t0) {
  live.busy = true;
  const out = $("live-answer");
  let ttft = null, text = "", question = request.question || null;
  try {
    const r = await fetch("/v1/edge/live", {
      method: "POST", headers: headers(),
      body: JSON.stringify(Object.assign({}, request, {
        max_tokens: parseInt($("max-tokens").value, 10) || 64,
        reuse_threshold: parseFloat($("live-threshold").value) || 0 })),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : r.status + " " + r.statusText);
    }
    out.textContent = "";
    await liveEvents(r, (d) => {
      if (d.question !== undefined && !d.done) {  // the transcript of a spoken question
        question = d.question;
        out.textContent = "";
        out.dataset.question = d.question;
      } else if (d.delta) {
        if (ttft === null) ttft = performance.now() - t0;
        text += d.delta;
        out.textContent = text;
      } else if (d.done) {
        live.answers++;
        const stats = "answer " + live.answers + " · " + d.tiles_encoded + "/" + d.tiles + " tiles encoded · " +
          "frame to first token " + Math.round(ttft === null ? performance.now() - t0 : ttft) + " ms · " +
          d.reused_tokens + "/" + d.prompt_tokens + " prompt positions reused · " + live.skipped + " frames skipped";
        $("live-stats").textContent = stats;
        out.dataset.answers = String(live.answers);
        out.dataset.tilesEncoded = String(d.tiles_encoded);
        const item = document.createElement("li");
        const spoken = request.audio !== undefined;
        item.dataset.trigger = spoken ? "speech" : "every";
        item.textContent = (spoken ? "[spoken] " : "") + (d.question || question) + " → " + d.text +
          " (" + d.tiles_encoded + "/" + d.tiles + " tiles)";
        const log = $("live-log");
        log.prepend(item);
        while (log.children.length > 10) log.lastChild.remove();  // bounded, however long it runs
      }
    });
  } catch (e) {
    status("live: " + e.message);
  } finally {
    live.busy = false;
  }
  if (live.spoken && live.stream) {  // a spoken question that ended during this answer
    const next = live.spoken;
    live.spoken = null;
    await liveAsk(next.request, next.t0);
  }
}

// --- spoken questions: record until pressed again, then ask about the frame current then ----------
async function liveMicStart() {
  try {
    live.recorder = await startRecording();  // app.js
    $("live-mic").classList.add("recording"); $("live-mic").textContent = "Send spoken question";
  } catch (e) { status("microphone: " + e.message); }
}

async function liveMicStop(ask) {
  const rec = live.recorder;
  if (!rec) return;
  live.recorder = null;
  const t0 = performance.now();
  const image = ask ? liveGrab() : null;  // the frame current at the end of the utterance
  const { chunks, rate } = await stopRecording(rec);
  $("live-mic").classList.remove("recording"); $("live-mic").textContent = "Ask by voice";
  const samples = chunks.reduce((a, c) => a + c.length, 0);
  if (!image || samples < rate / 4) { if (ask) status("live: nothing recorded"); return; }
  // wav() and base64() are the chat page's (app.js): the same input_audio the chat sends
  const request = { image, audio: { data: base64(wav(chunks, rate)), format: "wav" } };
  if (live.busy) { live.spoken = { request, t0 }; return; }  // newest wins; sent when the answer ends
  await liveAsk(request, t0);
}

$("live-mic").onclick = () => (live.recorder ? liveMicStop(true) : liveMicStart());

function liveStop() {
  clearInterval(live.timer); live.timer = null;
  liveMicStop(false); live.spoken = null;
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  live.stream = null;
  $("live-video").srcObject = null;
  $("live").hidden = true;
}

$("live-open").onclick = async () => {
  if (live.stream) return;
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (e) { status("camera: " + e.message); return; }
  const v = $("live-video");
  v.srcObject = live.stream;
  $("live").hidden = false;
  // the first frame exists only once the video has data: the first answer is not lost to an empty grab
  await new Promise((ok) => (v.readyState >= 2 ? ok() : v.addEventListener("loadeddata", ok, { once: true })));
  if (!live.stream) return;
  status("live: answering every " + $("live-every").value + " s");
  liveSchedule();
};
$("live-every").onchange = () => { if (live.stream) liveSchedule(); };
$("live-stop").onclick = liveStop;
