"""The preview's page: one HTML document with its CSS and JS inline (a board may have no way out to
the internet, so nothing is loaded from elsewhere). The token given in the page's address, if any,
is passed on to the stream and the JSON it polls."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-cam preview</title>
<style>
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #111; color: #ddd; }
  header { padding: 8px 12px; background: #222; display: flex; gap: 18px; flex-wrap: wrap; }
  header b { color: #fff; }
  main { display: flex; flex-wrap: wrap; gap: 12px; padding: 12px; }
  /* align-self: a flex row would otherwise stretch the picture to the height of the tables */
  #video { flex: 0 1 640px; min-width: 0; max-width: 100%; height: auto; align-self: flex-start;
           background: #000; border: 1px solid #333; }
  section { flex: 1 1 320px; min-width: 280px; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 12px; }
  th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #2a2a2a; white-space: nowrap; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  #error { color: #f77; }
</style></head>
<body>
<header><b>edge-cam</b><span id="summary">waiting for the first frame...</span><span id="error"></span></header>
<main>
  <img id="video" alt="annotated stream">
  <section>
    <h3>Stage latency (ms, median / p95)</h3>
    <table id="stages"><tbody></tbody></table>
    <h3>Latest events</h3>
    <table id="events"><thead><tr><th>frame</th><th>stream</th><th>teacher</th><th>ROIs (student)</th>
    </tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
document.getElementById("video").src = "stream.mjpg" + q;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

function fill(tbody, rows) {
  tbody.replaceChildren();
  for (const r of rows) {
    const tr = tbody.insertRow();
    r.forEach((v, i) => cell(tr, v, typeof v === "number" || i > 0 && /^[0-9.]+/.test(v) ? "n" : ""));
  }
}

async function poll() {
  try {
    const [status, events] = await Promise.all([
      fetch("status.json" + q).then(r => r.ok ? r.json() : Promise.reject(r.status)),
      fetch("events.json" + q).then(r => r.ok ? r.json() : Promise.reject(r.status))]);
    document.getElementById("error").textContent = "";
    document.getElementById("summary").textContent =
      `${status.frames} frames | ${status.fps.toFixed(1)} FPS | teacher ${status.teacher_runs} | ` +
      `dropped ${status.dropped} | skipped ${status.skipped} | MQTT queue ${status.mqtt_queue}`;
    fill(document.querySelector("#stages tbody"), Object.entries(status.latency_ms).map(
      ([k, v]) => [k, `${v.median.toFixed(2)} / ${v.p95.toFixed(2)}`]));
    fill(document.querySelector("#events tbody"), events.map(e => [
      String(e.frame), String(e.stream),
      (e.teacher.ran ? "ran " : "reused ") + (e.teacher.topk.length ?
        `${e.teacher.topk[0].label} ${e.teacher.topk[0].score.toFixed(2)}` : ""),
      e.rois.map(r => `${r.label}` + (r.student ? ` (${r.student.label} ${r.student.score.toFixed(2)})` : ""))
        .join(", ")]));
  } catch (err) {
    document.getElementById("error").textContent = "no answer from the board (" + err + ")";
  }
}
poll();
setInterval(poll, 1000);
</script>
</body></html>
"""
