// The build page's log: live over Server-Sent Events while the build runs, read in pages once it is over.
// Entries are numbered from 0 (the SSE "id"); the page keeps every entry it received and asks the server to
// resume after the last one, so a dropped or restarted stream loses and doubles nothing. The page shows at
// most `cap` lines (older ones behind "Show earlier lines") and appends new ones once per animation frame,
// so a log of 50,000 lines does not freeze it.
"use strict";
(function () {
  const box = document.getElementById("build-log");
  if (!box) return;
  const TERMINAL = new Set(["complete", "error", "internalerror", "cancelled", "expired"]);
  const CAP = 2000;        // lines in the page (more after "Show earlier lines")
  const CHUNK = 2000;      // lines each "Show earlier lines" adds
  const PER_FRAME = 1000;  // lines appended in one animation frame
  const PAGE = 10000;      // entries per /logs request (the API's page)

  const state = {
    entries: [],        // every entry received: entries[seq] = {message, type, data}
    stepOf: [],         // stepOf[seq]: the seq of the Dockerfile step (command entry) it belongs to, or -1
    rendered: 0,        // entries[0 .. rendered) are in the page (or hidden above it)
    shown: 0,           // line elements in the page
    cap: CAP,
    source: null,       // the EventSource while streaming
    connects: 0,
    ended: box.dataset.terminal === "true",
    phase: box.dataset.phase,
  };
  let lastCommand = -1;
  let group = null;     // the .lines element new lines go into (null: top level)
  let scheduled = false;
  let retryAt = 0;      // the watchdog's next attempt (ms), later after each stream that failed at once
  let failures = 0;

  const body = document.createElement("div");
  body.className = "log-body";
  const earlier = document.createElement("button");
  earlier.type = "button";
  earlier.className = "small show-earlier";
  earlier.hidden = true;
  box.append(earlier, body);
  const follow = document.getElementById("log-follow");
  const statusText = document.getElementById("log-status");
  const phaseBadge = document.getElementById("build-phase");

  function say(text) { if (statusText) statusText.textContent = text; }

  function setPhase(phase) {
    if (!phase) return;
    state.phase = phase;
    if (phaseBadge) {
      phaseBadge.textContent = phase;
      phaseBadge.className = "badge phase phase-" + phase;
    }
    if (TERMINAL.has(phase)) {
      const cancel = document.getElementById("cancel-build");
      if (cancel) cancel.hidden = true;
    }
  }

  // -- receiving ------------------------------------------------------------------------------------------
  /** Take entry number `seq`; false if it is not the next one (then the caller resumes from the next one). */
  function accept(seq, entry) {
    if (seq < state.entries.length) return true;       // already have it (a resumed stream repeats nothing, but be sure)
    if (seq > state.entries.length) return false;      // a gap: resume from what we have
    state.entries.push(entry);
    if (entry.type === "command") lastCommand = seq;
    else if (entry.type === "phase") { lastCommand = -1; setPhase(entry.message); }
    state.stepOf.push(entry.type === "command" ? seq : lastCommand);
    schedule();
    return true;
  }

  function connect() {
    if (state.ended) return;
    if (state.source) state.source.close();
    const source = new EventSource(box.dataset.stream + "?start=" + state.entries.length);
    state.source = source;
    state.connects += 1;
    source.onopen = () => { failures = 0; say("Live"); };
    source.onmessage = (event) => {
      if (!accept(Number(event.lastEventId), JSON.parse(event.data))) connect();
    };
    source.addEventListener("end", (event) => {
      state.ended = true;
      source.close();
      setPhase(JSON.parse(event.data).phase);
      say("The build is over");
    });
    // The browser reconnects by itself (sending Last-Event-ID); when it gives up (or the stream was closed
    // under us) the watchdog below starts a new one from the last entry held.
    source.onerror = () => {
      if (state.ended) return;
      say("Connection lost: reconnecting…");
      if (source.readyState === EventSource.CLOSED) {  // refused (signed out, gone): wait longer each time
        failures += 1;
        retryAt = Date.now() + Math.min(30000, 1000 * 2 ** failures);
      }
    };
  }

  async function readFinished() {
    say("Loading…");
    for (;;) {
      const start = state.entries.length;
      const response = await fetch(box.dataset.logs + "?start=" + start, {credentials: "same-origin"});
      if (!response.ok) { say("Could not load the log (" + response.status + ")"); return; }
      const page = await response.json();
      page.logs.forEach((entry, i) => accept(page.start + i, entry));
      if (page.logs.length < PAGE || state.entries.length >= page.total) break;
    }
    say("");
  }

  // -- rendering --------------------------------------------------------------------------------------------
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    const run = () => { if (scheduled) { scheduled = false; render(); } };
    requestAnimationFrame(run);
    setTimeout(run, 100);  // hidden tabs get no animation frames
  }

  function lineFor(seq) {
    const entry = state.entries[seq];
    const line = document.createElement("div");
    line.className = "line" + (entry.type ? " " + entry.type : "");
    line.dataset.seq = seq;
    line.textContent = entry.type === "phase" ? "— " + entry.message + " —" : entry.message;
    return line;
  }

  function openStep(seq, continued) {
    const details = document.createElement("details");
    details.className = "step";
    details.open = true;
    const summary = document.createElement("summary");
    summary.className = "line command";
    summary.dataset.seq = seq;
    summary.textContent = state.entries[seq].message + (continued ? " (continued)" : "");
    const lines = document.createElement("div");
    lines.className = "lines";
    details.append(summary, lines);
    return details;
  }

  /** Append entries [from, to) to the page (`target`: the log body; a step's lines go into its group). */
  function append(target, from, to) {
    for (let seq = from; seq < to; seq++) {
      const entry = state.entries[seq];
      if (entry.type === "command") {
        const details = openStep(seq, false);
        target.append(details);
        group = details.lastElementChild;
      } else if (entry.type === "phase") {
        group = null;
        target.append(lineFor(seq));
      } else {
        (group || target).append(lineFor(seq));
      }
      state.shown += 1;
    }
  }

  /** Empty the page's log and continue it from entry `from` (under its step's header when it is in one). */
  function rebuild(from) {
    body.textContent = "";
    state.shown = 0;
    group = null;
    if (from < state.entries.length && state.entries[from].type !== "command" && state.stepOf[from] >= 0) {
      const details = openStep(state.stepOf[from], true);
      details.firstElementChild.classList.add("continued");
      body.append(details);
      group = details.lastElementChild;
    }
    state.rendered = from;
  }

  function render() {
    // More waiting than the page keeps (a finished log, a tab that was hidden): skip what would be dropped.
    if (state.entries.length - state.rendered > state.cap) rebuild(state.entries.length - state.cap);
    const to = Math.min(state.entries.length, state.rendered + PER_FRAME);
    if (to > state.rendered) {
      // Straight into the page: nothing reads the layout until the end of the frame, so it is laid out once.
      append(body, state.rendered, to);
      state.rendered = to;
      trim();
      updateEarlier();
      if (follow && follow.checked) box.scrollTop = box.scrollHeight;
    }
    if (state.rendered < state.entries.length) schedule();
  }

  /** Keep at most `cap` lines in the page: drop the oldest. */
  function trim() {
    let excess = state.shown - state.cap;
    while (excess > 0) {
      const first = body.firstElementChild;
      if (!first) break;
      if (first.tagName === "DETAILS" && first.lastElementChild.firstElementChild) {
        first.lastElementChild.firstElementChild.remove();
        first.firstElementChild.classList.add("continued");
      } else {
        if (first.tagName === "DETAILS" && group === first.lastElementChild) group = null;
        first.remove();
      }
      excess -= 1;
      state.shown -= 1;
    }
  }

  function firstShown() {
    const line = body.querySelector(".lines > .line, .log-body > .line, summary.line:not(.continued)");
    return line ? Number(line.dataset.seq) : state.rendered;
  }

  function updateEarlier() {
    const hidden = firstShown();
    earlier.hidden = hidden <= 0;
    earlier.textContent = "Show earlier lines (" + hidden + " not shown)";
  }

  earlier.addEventListener("click", () => {
    const first = firstShown();
    const from = Math.max(0, first - CHUNK);
    state.cap += first - from;
    if (follow) follow.checked = false;
    rebuild(from);
    append(body, from, state.entries.length);
    state.rendered = state.entries.length;
    updateEarlier();
    box.scrollTop = 0;
  });

  // -- follow the tail, collapse steps -----------------------------------------------------------------------
  box.addEventListener("scroll", () => {
    if (follow) follow.checked = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
  });
  if (follow) follow.addEventListener("change", () => { if (follow.checked) box.scrollTop = box.scrollHeight; });
  const toggle = (open) => () => box.querySelectorAll("details.step").forEach((d) => { d.open = open; });
  const collapse = document.getElementById("log-collapse");
  const expand = document.getElementById("log-expand");
  if (collapse) collapse.addEventListener("click", toggle(false));
  if (expand) expand.addEventListener("click", toggle(true));

  // -- start ------------------------------------------------------------------------------------------------
  window.slipwayBuildLog = {state: state, restart: connect};
  if (state.ended) {
    readFinished();
  } else {
    connect();
    setInterval(() => {
      if (!state.ended && (!state.source || state.source.readyState === EventSource.CLOSED)
          && Date.now() >= retryAt) connect();
    }, 1000);
  }
})();
