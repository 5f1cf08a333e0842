// framemark verify page: talks to the same API as any client (POST /v1/verify), renders the verdict.
// Everything from the server is written with textContent, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "framemark.token";
  const $ = (id) => document.getElementById(id);
  const state = { info: null, busy: false };

  // verdict name -> [label, description], from GET /v1/info (the server defines them: detect/verdict.py)
  const VERDICTS = {};
  const SOURCE_TYPES = {
    trainedAlgorithmicMedia: "AI-generated (trained algorithmic media)",
    compositeWithTrainedAlgorithmicMedia: "partly AI-generated (composite)",
    algorithmicMedia: "algorithmic media",
    compositeSynthetic: "composite synthetic",
    digitalCapture: "digital capture (camera)",
  };

  // ------------------------------------------------------------------------------------------ helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function show(node, on) { node.hidden = !on; }
  function facts(dl, rows) {
    clear(dl);
    for (const [name, value] of rows) {
      if (value === undefined || value === null || value === "") continue;
      dl.append(el("dt", { text: name }), el("dd", { text: String(value) }));
    }
  }
  function pill(node, text, kind) { node.textContent = text; node.className = "pill " + (kind || ""); }
  function bytes(n) {
    if (n == null) return "";
    const units = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function pvalue(mark) {
    if (!mark) return "";
    if (mark.p_value > 0) return mark.p_value < 1e-3 ? mark.p_value.toExponential(2) : mark.p_value.toPrecision(3);
    return "≈ 1e" + Math.round(mark.log10_p_value);
  }
  function agent(a) {
    if (!a) return "";
    if (typeof a === "string") return a;
    return [a.name, a.version].filter(Boolean).join(" ");
  }
  function sourceType(uri) {
    if (!uri) return "";
    const name = String(uri).split("/").pop();
    return SOURCE_TYPES[name] ? `${SOURCE_TYPES[name]} — ${name}` : name;
  }
  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }

  // ------------------------------------------------------------------------------------------ token
  function renderToken() {
    const required = state.info ? state.info.auth && state.info.auth.required : true;
    const have = token();
    $("token-summary").textContent = !required ? "Access token (this server does not require one)"
      : have ? "Access token: set for this tab" : "Access token: needed";
    if (required && !have) $("token-panel").open = true;
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    try { if (value) sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* storage off: not kept */ }
    $("token").value = "";
    $("token-panel").open = false;
    renderToken();
    $("file").focus();
  });
  $("token-forget").addEventListener("click", () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    renderToken();
  });

  // ------------------------------------------------------------------------------------------ info
  fetch("/v1/info").then((r) => r.ok ? r.json() : null).then((info) => {
    if (!info) return;
    state.info = info;
    for (const v of info.verdicts || []) VERDICTS[v.name] = [v.label, v.description];
    const lim = info.limits || {};
    $("limits").textContent = `MP4, MOV, WebM, MKV, AVI · up to ${bytes(lim.max_upload_bytes)}, ` +
      `${lim.max_duration_s} s, ${lim.max_resolution}`;
    $("version").textContent = info.version || "";
    $("model").textContent = info.model ? `model ${info.model.name} ${info.model.version}` : "C2PA checks only";
    if (lim.uploads_kept) $("retention").textContent = "This server keeps uploads.";
    renderToken();
  }).catch(() => renderToken());

  // ------------------------------------------------------------------------------------------ errors
  function showError(title, detail, code) {
    const box = $("error");
    clear(box);
    box.append(el("strong", { text: title }));
    if (detail) box.append(el("span", { text: detail }));
    if (code) box.append(document.createTextNode(" "), el("span", { class: "code", text: `(${code})` }));
    show(box, true);
  }
  function sentence(text) {
    text = String(text || "").trim();
    if (!text) return "";
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?)]$/.test(text) ? text : text + ".";
  }
  function explain(status, body) {
    const message = sentence(body && body.message);
    switch (status) {
      case 401: $("token-panel").open = true;
        return ["This server needs a valid access token.",
          body && body.code === "invalid_token" ? "The token was not accepted (unknown or revoked): enter another one above."
            : "Enter a token with the verify scope in the Access token box above."];
      case 403: return ["This token may not verify videos.", "Ask for a token with the verify scope."];
      case 413: return ["The file is too large for this server.", message];
      case 415: return ["That file is not a video.", message];
      case 422: return ["The video could not be checked.", message];
      case 503: return ["The server is busy.", message || "Try again in a moment."];
      default: return [`The server answered ${status}.`, message];
    }
  }

  // ------------------------------------------------------------------------------------------ upload
  function setProgress(label, value) {
    show($("progress"), true);
    $("progress-label").textContent = label;
    const bar = $("progress-bar");
    if (value == null) { bar.removeAttribute("value"); $("progress-value").textContent = ""; }
    else { bar.value = value; $("progress-value").textContent = Math.round(value) + "%"; }
  }
  function setBusy(on) {
    state.busy = on;
    $("drop").classList.toggle("busy", on);
    $("file").disabled = on;
  }

  function upload(file) {
    if (state.busy || !file) return;
    show($("error"), false);
    show($("result"), false);
    const lim = state.info && state.info.limits;
    if (lim && file.size > lim.max_upload_bytes) {
      showError("The file is too large for this server.",
        `${file.name} is ${bytes(file.size)}; the limit is ${bytes(lim.max_upload_bytes)}.`, "upload_too_large");
      return;
    }
    if (file.size === 0) { showError("The file is empty.", `${file.name} has 0 bytes.`, "empty_upload"); return; }
    setBusy(true);
    setProgress(`Uploading ${file.name}…`, 0);
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/verify?first_frame=true");
    xhr.responseType = "text";
    const t = token();
    if (t) xhr.setRequestHeader("Authorization", "Bearer " + t);
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) setProgress(`Uploading ${file.name}…`, 100 * ev.loaded / ev.total); };
    xhr.upload.onload = () => setProgress("Checking: C2PA manifest, watermark recovery, ledger…", null);
    xhr.onerror = () => { done(); showError("Could not reach the server.", "The connection failed or was closed; try again.", "network_error"); };
    xhr.ontimeout = xhr.onerror;
    xhr.onload = () => {
      done();
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 200 && body) { render(body); return; }
      const [title, detail] = explain(xhr.status, body);
      showError(title, detail, body && body.code);
      if (body && body.result) render(body.result);
    };
    xhr.send(form);
  }
  function done() { setBusy(false); show($("progress"), false); }

  $("file").addEventListener("change", (ev) => { const f = ev.target.files[0]; ev.target.value = ""; upload(f); });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (ev) => {
    ev.preventDefault(); drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("dragging")));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    upload(f);
  });
  // a file dropped beside the zone must not navigate away from the page
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());

  // ------------------------------------------------------------------------------------------ verdict card
  function render(r) {
    const verdict = r.verdict || "error";
    let [label, text] = VERDICTS[verdict] || (r.verdict ? [r.verdict, ""]
      : ["Could not be checked", (r.errors || []).join("; ")]);
    if (verdict === "tampered") text = tamperReasons(r) || text;
    const badge = $("verdict-badge");
    badge.textContent = label;
    badge.className = "badge v-" + verdict;
    badge.setAttribute("data-verdict", verdict);
    $("verdict-text").textContent = text;
    $("file-name").textContent = r.file || "";
    const v = r.video || {};
    const bits = [];
    if (v.width) bits.push(`${v.width}×${v.height}`);
    if (v.duration_s != null) bits.push(`${v.duration_s} s`);
    if (v.frames) bits.push(`${v.frames} frames`);
    if (v.codec) bits.push(v.codec);
    if (r.size != null) bits.push(bytes(r.size));
    if (r.elapsed_s != null) bits.push(`checked in ${r.elapsed_s} s`);
    $("file-facts").textContent = bits.join(" · ");
    if (r.first_frame && String(r.first_frame).startsWith("data:image/")) {
      $("frame-img").src = r.first_frame;
      $("frame-img").alt = `First frame of ${r.file || "the video"}`;
      show($("frame"), true);
    } else show($("frame"), false);

    renderC2pa(r.c2pa || {});
    renderWatermark(r.watermark);
    renderLedger(r.ledger);
    renderClassifier(r.classifier);
    const problems = r.errors || [];
    clear($("problems-list"));
    for (const p of problems) $("problems-list").append(el("li", { text: p }));
    show($("problems"), problems.length > 0);
    const raw = Object.assign({}, r);
    if (raw.first_frame) raw.first_frame = raw.first_frame.slice(0, 40) + "… (JPEG, shown above)";
    $("raw-json").textContent = JSON.stringify(raw, null, 2);
    document.querySelector(".raw").open = false;
    show($("result"), true);
    $("verdict-title").focus({ preventScroll: false });
  }

  function tamperReasons(r) {
    const c = r.c2pa || {}, t = ((r.watermark || {}).tamper) || {};
    const reasons = [];
    if (c.state === "Invalid") reasons.push("the file's C2PA manifest is invalid (the bytes changed after signing, or the signature is broken)");
    if (c.state === "damaged") reasons.push("the file's C2PA manifest is damaged (its boxes were renamed or broken)");
    if (c.soft_binding_matches_watermark === false) reasons.push("the manifest names another watermark than the one in the video");
    if (t.reordered) reasons.push("frames were moved out of their order");
    if ((t.foreign_latent_frames || []).length) reasons.push("some frames do not carry the watermark (replaced or inserted)");
    return reasons.length ? "Edited after it was made: " + reasons.join("; ") + "." : "";
  }

  function renderC2pa(c) {
    const m = c.manifest || {};
    const states = {
      Trusted: ["Trusted", "ok", "Signature valid and the signer chains to a trusted root."],
      Valid: ["Valid · signer not trusted", "warn", "Signature valid, but the signer is not one this server trusts."],
      Invalid: ["Invalid", "bad", "The manifest fails validation: the file changed after signing, or the signature is broken."],
      damaged: ["Damaged", "bad", "The file holds the remains of a C2PA manifest that can no longer be read: its structure was broken."],
      absent: ["None", "", "No C2PA manifest in the file (never signed, or stripped by a platform)."],
    };
    const [name, kind, text] = states[c.state] || ["Unreadable", "bad", c.error || "C2PA could not read this file."];
    pill($("c2pa-state"), name, kind);
    $("c2pa-text").textContent = text;
    const signer = m.signer || {};
    facts($("c2pa-facts"), c.state && c.state !== "absent" ? [
      ["Generator", agent(m.software_agent) || m.claim_generator],
      ["Action", m.action],
      ["Source type", sourceType(m.digital_source_type)],
      ["Signer", [signer.common_name, signer.issuer ? `(issued by ${signer.issuer})` : ""].filter(Boolean).join(" ")],
      ["Trusted", c.state === "Trusted" ? "yes" : c.state === "Valid" ? "no (untrusted signer)" : "no"],
      ["Claim generator", m.claim_generator],
      ["Failure codes", (c.codes || []).join(", ")],
      ["Soft binding", m.soft_binding ? `${m.soft_binding.alg} ${m.soft_binding.value || ""}` : ""],
      ["Matches watermark", c.soft_binding_matches_watermark == null ? "" : c.soft_binding_matches_watermark ? "yes" : "no"],
    ] : []);
  }

  function renderWatermark(w) {
    const timeline = $("timeline");
    if (!w) {
      pill($("wm-state"), "Not checked", "");
      $("wm-text").textContent = "This server has no watermark key, so only the manifest was checked.";
      facts($("wm-facts"), []); show(timeline, false); return;
    }
    if (w.detected) {
      pill($("wm-state"), "Detected", "ai");
      $("wm-text").textContent = `Found with key ${w.key_id}; the chance of this on an unmarked video is p = ${pvalue(w)}.`;
    } else {
      pill($("wm-state"), "Not found", "");
      $("wm-text").textContent = `No watermark of key ${w.key_id} (p = ${pvalue(w)}, threshold ${w.fpr}).`;
    }
    const al = w.alignment || {};
    facts($("wm-facts"), [
      ["Detected", w.detected ? "yes" : "no"],
      ["p-value", pvalue(w)],
      ["Payload", w.payload || (w.payload_unreadable ? "unreadable (damaged)" : "")],
      ["Key id", w.key_id],
      ["Bit agreement", w.bit_accuracy != null ? (100 * w.bit_accuracy).toFixed(1) + "%" : ""],
      ["Crop undone", al.crop_undone != null && al.crop_undone < 1 ? `${Math.round(100 * al.crop_undone)}% of each side kept` : ""],
      ["Mirrored", al.flipped ? "yes (read mirrored back)" : ""],
      ["Picture inside bars", Array.isArray(al.content_box) ? `${al.content_box[3]}×${al.content_box[2]} at (${al.content_box[1]}, ${al.content_box[0]})` : ""],
      ["Found at", w.segment ? `${w.segment.start_s.toFixed(2)}–${w.segment.end_s.toFixed(2)} s of ${w.segment.upload_s.toFixed(2)} s` +
        (w.segment.copies > 1 ? `, looped ×${w.segment.copies}` : "") +
        (w.segment.inside_other_footage ? ", inside other footage" : "") : ""],
    ]);
    const t = w.tamper || {};
    if (w.detected && t.assessed && Array.isArray(t.frame_agreement)) {
      renderTimeline(t, al.generated_frames || 17);
      show(timeline, true);
    } else show(timeline, false);
  }

  function renderTimeline(t, frames) {
    const list = $("timeline-cells");
    clear(list);
    const agreement = t.frame_agreement;
    const foreign = new Set(t.foreign_latent_frames || []);
    const top = Math.max(0.52, ...agreement);
    // latent frame j stands for video frame 1 (j = 0), then 4 frames each (the VAE's temporal stride)
    const span = (j) => {
      const lo = j === 0 ? 1 : 4 * (j - 1) + 2, hi = j === 0 ? 1 : Math.min(4 * j + 1, frames);
      return lo === hi ? `f${lo}` : `f${lo}–${hi}`;
    };
    agreement.forEach((a, j) => {
      const moved = t.frame_assignment && t.frame_assignment[j] !== j;
      const kind = foreign.has(j) ? "foreign" : moved ? "moved" : "ok";
      const height = Math.max(4, Math.min(100, 100 * (a - 0.5) / (top - 0.5)));
      const fill = el("span", { class: "fill" }); fill.style.height = height.toFixed(0) + "%";
      const tag = kind === "foreign" ? "foreign" : kind === "moved" ? `was ${span(t.frame_assignment[j])}` : "";
      const range = span(j);
      const item = el("li", { class: kind, title: `video frames ${range}: ${(100 * a).toFixed(1)}% agreement with the watermark` +
          (kind === "moved" ? `; they carry the watermark of frames ${span(t.frame_assignment[j])}` : kind === "foreign" ? "; no watermark: replaced or inserted" : "") },
        el("span", { class: "bar" }, fill), el("span", { class: "lbl", text: range }),
        el("span", { class: "lbl", text: (100 * a).toFixed(0) + "%" }), tag ? el("span", { class: "tag", text: tag }) : null);
      list.append(item);
    });
    const notes = [];
    if (foreign.size) notes.push(`${foreign.size} latent frame(s) do not carry the watermark: replaced or inserted content.`);
    if (t.reordered) notes.push("Frames are out of order: the marked bars carry the watermark of another position.");
    if (!notes.length) notes.push("Every frame carries the watermark in its place: no frame was dropped, moved or replaced.");
    if (t.low_agreement_cells) notes.push(`${t.low_agreement_cells} of ${t.cells} spatial cells agree weakly.`);
    $("timeline-text").textContent = notes.join(" ");
  }

  function renderLedger(l) {
    const box = $("ledger");
    if (!l) { show(box, false); return; }
    show(box, true);
    if (l.recovered) {
      const m = l.manifest || {}, e = l.entry || {}, sig = l.signature || {};
      $("ledger-title").textContent = "Manifest recovered from the ledger";
      $("ledger-text").textContent = "This file's own manifest was stripped or broken, but its watermark led to " +
        "the manifest the clip was signed with. It describes the clip this watermark was issued to; it is not bound " +
        "to these bytes.";
      facts($("ledger-facts"), [
        ["Manifest", e.manifest_label || m.label],
        ["Signature", sig.state ? `${sig.state}${(sig.codes || []).length ? " (" + sig.codes.join(", ") + ")" : ""}` : ""],
        ["Generator", agent(m.software_agent) || m.claim_generator],
        ["Source type", sourceType(m.digital_source_type)],
        ["Signer", (m.signer || {}).common_name],
        ["Created", e.created_at],
        ["Payload", l.payload],
      ]);
    } else {
      $("ledger-title").textContent = "Ledger";
      $("ledger-text").textContent = l.statement || "Nothing was recovered from the ledger.";
      facts($("ledger-facts"), [["Payload", l.payload]]);
    }
  }

  function renderClassifier(c) {
    const box = $("classifier");
    if (!c || c.p_synthetic == null) { show(box, false); return; }
    show(box, true);
    const p = Number(c.p_synthetic);
    $("cls-meter").value = p;
    $("cls-value").textContent = (100 * p).toFixed(0) + "%";
    $("cls-text").textContent = `Calibrated probability that the video is synthetic (passive classifier` +
      (c.model_version ? `, ${c.model_version}` : "") + "). A score, not proof.";
  }
})();
