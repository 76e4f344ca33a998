// The dashboard: every model with its rollout (stage, weights, each version's live rps, error
// rate and latency, every gate's verdict and sentence, and the rollout's report: each stage's
// time, requests, gate effects with their intervals, and decision), the event timeline, and
// the operator's commands. Live through the event feed (a rollout event refreshes at once) and a poll of the
// JSON API every two seconds (gates and metrics move without events). Who the token belongs
// to comes from GET /api/v1/whoami: a viewer gets no buttons. Every text from the server goes
// into the page as text, never as HTML.
import { ApiError, call, followEvents, forgetToken, saveToken, savedToken } from "./api.js";

const pollMs = 2000;
const timelineLimit = 200;
// A report is read again when its rollout decided something, else this often while it is live
// (its current stage's requests and gates move): it pages through the model's events.
const reportMs = 10000;

const state = {
  identity: null,        // whoami: {name, role, tokens_required}
  models: [],            // GET /api/v1/models
  rollouts: new Map(),   // model -> GET /api/v1/rollouts entry
  metrics: new Map(),    // model -> GET /api/v1/models/{model}/metrics
  reports: new Map(),    // model -> {report, sequence, at}: GET /api/v1/rollouts/{model}/report
  events: [],            // newest first
  seen: new Set(),       // event ids in `events`
  lastEventId: 0,
  cards: new Map(),      // model -> its card's elements
  feed: null,            // AbortController of the live feed
  poll: null,            // the poll's interval id
  refreshing: null,      // the refresh in flight, if any
  refreshAgain: false,   // another was asked for meanwhile
};

const $ = (id) => document.getElementById(id);

// An element with attributes and children; strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(typeof child === "string" ? child : child instanceof Node ? child : String(child));
  }
  return node;
}

const percentOfBp = (bp) => `${(bp / 100).toLocaleString("en", { maximumFractionDigits: 2 })} %`;
const ratio = (x) => (x === undefined || x === null ? "–" : `${(x * 100).toFixed(2)} %`);
const millis = (s) => (s === undefined || s === null ? "–" : `${(s * 1000).toFixed(1)} ms`);
const perSecond = (x) => (x === undefined || x === null ? "–" : x.toFixed(1));
const clockTime = (ms) => (ms ? new Date(ms).toLocaleTimeString("en-GB") : "");

function notice(text) {
  $("notice").textContent = text ?? "";
  $("notice").hidden = !text;
}

function feedState(name, text) {
  $("feed-state").dataset.state = name;
  $("feed-state").textContent = text ?? name;
}

// --- Token and identity ---

function askForToken(why) {
  stop();
  $("token-why").textContent = why || "This admin API needs a bearer token.";
  $("token-form").hidden = false;
  $("token-input").value = "";
  $("token-input").focus();
  feedState("refused", "token needed");
}

function showIdentity() {
  const who = state.identity;
  $("identity").textContent = who.tokens_required
    ? `${who.name} (${who.role})`
    : `no tokens configured: everyone may operate (${who.role})`;
  $("identity").dataset.role = who.role;
  $("forget-token").hidden = !savedToken();
}

const canOperate = () => state.identity?.role === "operator";

// --- Reading the API ---

function mergeEvents(list) {
  for (const e of list) {
    if (typeof e.id !== "number" || state.seen.has(e.id)) continue;
    state.seen.add(e.id);
    state.events.push(e);
    state.lastEventId = Math.max(state.lastEventId, e.id);
  }
  state.events.sort((a, b) => b.id - a.id);
  for (const dropped of state.events.splice(timelineLimit)) state.seen.delete(dropped.id);
}

async function loadHistory() {
  const pages = await Promise.all(state.models.map((m) =>
    call("GET", `/api/v1/rollouts/${encodeURIComponent(m.name)}/events?limit=50`)));
  for (const page of pages) mergeEvents(page.events);
}

async function readAll() {
  const [models, rollouts] = await Promise.all([
    call("GET", "/api/v1/models"), call("GET", "/api/v1/rollouts")]);
  state.models = models.models;
  state.rollouts = new Map(rollouts.rollouts.map((r) => [r.model, r]));
  const metrics = await Promise.all(state.models.map((m) =>
    call("GET", `/api/v1/models/${encodeURIComponent(m.name)}/metrics`).catch(() => null)));
  state.metrics = new Map(state.models.map((m, i) => [m.name, metrics[i]]));
  await Promise.all([...state.rollouts.values()].map(readReport));
}

async function readReport(rollout) {
  const known = state.reports.get(rollout.model);
  const live = rollout.phase === "progressing" || rollout.phase === "paused";
  if (known && known.sequence === rollout.sequence &&
      !(live && Date.now() - known.at >= reportMs)) return;
  const report = await call("GET",
    `/api/v1/rollouts/${encodeURIComponent(rollout.model)}/report`).catch(() => null);
  if (report) state.reports.set(rollout.model, { report, sequence: rollout.sequence, at: Date.now() });
}

// Reads everything and redraws, one read at a time: a refresh asked for during one runs once
// it is over (what it was asked for may have happened after that read began).
function refresh() {
  if (state.refreshing) {
    state.refreshAgain = true;
    return state.refreshing;
  }
  state.refreshing = readAll()
    .then(() => { notice(""); render(); })
    .catch(failed)
    .finally(() => {
      state.refreshing = null;
      if (state.refreshAgain) {
        state.refreshAgain = false;
        refresh();
      }
    });
  return state.refreshing;
}

function failed(e) {
  if (e instanceof ApiError && e.status === 401) {
    askForToken(e.message);
  } else {
    notice(e.message);
  }
}

// --- Drawing ---

function render() {
  const main = $("models");
  const names = new Set(state.models.map((m) => m.name));
  for (const [name, card] of state.cards) {
    if (!names.has(name)) { card.root.remove(); state.cards.delete(name); }
  }
  state.models.forEach((model, i) => {
    const card = cardFor(model.name);
    drawCard(card, model, state.rollouts.get(model.name), state.metrics.get(model.name));
    // In the API's order, moving a card only when it is out of place: moving it would take
    // the focus from an input the operator is typing in.
    if (main.children[i] !== card.root) main.insertBefore(card.root, main.children[i] ?? null);
  });
  drawTimeline();
}

function cardFor(name) {
  let card = state.cards.get(name);
  if (!card) {
    card = {
      stage: el("span", { class: "stage", data: { field: "stage" } }),
      phase: el("span", { class: "phase", data: { field: "phase" } }),
      body: el("div", { class: "body" }),
      controls: null,  // made once the model has a rollout and the token may operate
      message: el("p", { class: "message", data: { field: "message" }, role: "status" }),
    };
    // The buttons (once made) go right under the title, above the figures: a redraw changes
    // the figures' height, and a button that moved as the operator clicked would be missed.
    card.root = el("article", { class: "model", data: { model: name } },
      el("h2", {}, name, " ", card.stage, " ", card.phase), card.message, card.body);
    state.cards.set(name, card);
  }
  return card;
}

function drawCard(card, model, rollout, metrics) {
  card.stage.textContent = model.stage;
  card.phase.textContent = rollout ? rollout.phase : "no rollout";
  card.phase.dataset.phase = rollout ? rollout.phase : "none";
  card.body.replaceChildren(
    weightBar(model), versionTable(model, metrics), rollout ? rolloutFacts(rollout) : "",
    rollout ? gateTable(rollout) : "",
    rollout ? reportPanel(state.reports.get(model.name)?.report) : "");
  if (rollout && canOperate() && !card.controls) {
    card.controls = controlsFor(model.name);
    card.root.insertBefore(card.controls.root, card.message);
  }
  if (card.controls) card.controls.update(rollout);
}

function weightBar(model) {
  const bar = el("div", { class: "weights", title: "traffic weights" });
  for (const v of model.versions) {
    if (v.weight_bp === 0) continue;
    const part = el("span", { class: v.stable ? "stable" : "candidate" },
      `${v.name} ${percentOfBp(v.weight_bp)}`);
    part.style.width = `${v.weight_bp / 100}%`;  // CSSOM: allowed under style-src 'self'
    bar.append(part);
  }
  return bar;
}

// Each version's figures over the last minute of the current stage.
function versionTable(model, metrics) {
  const current = new Map();
  for (const v of metrics?.versions ?? []) {
    if (v.stage === model.stage) current.set(v.version, v.window);
  }
  const streams = [...current.values()].some((w) => w.time_to_first_token_seconds);
  const head = el("tr", {}, ["version", "weight", "rps", "error rate", "p50", "p99"]
    .concat(streams ? ["TTFT p50", "TTFT p99"] : []).map((h) => el("th", {}, h)));
  const rows = model.versions.map((v) => {
    const w = current.get(v.name);
    const ttft = w?.time_to_first_token_seconds;
    return el("tr", { data: { version: v.name } },
      el("td", {}, v.name, v.stable ? el("span", { class: "tag" }, "stable") : ""),
      el("td", {}, percentOfBp(v.weight_bp)),
      el("td", {}, perSecond(w?.rps)),
      el("td", {}, w ? ratio(w.error_rate) : "–"),
      el("td", {}, millis(w?.latency_seconds?.p50)),
      el("td", {}, millis(w?.latency_seconds?.p99)),
      streams ? [el("td", {}, millis(ttft?.p50)), el("td", {}, millis(ttft?.p99))] : []);
  });
  return el("table", { class: "versions" }, el("thead", {}, head), el("tbody", {}, rows));
}

function rolloutFacts(r) {
  const stages = el("ol", { class: "stages" }, r.stages.map((s, i) =>
    el("li", { class: i === r.stage_index ? "current" : i < r.stage_index ? "done" : "" },
      `${s.name} ${percentOfBp(s.weight_bp)}`)));
  const facts = [
    ["candidate", `${r.candidate} at ${percentOfBp(r.candidate_weight_bp)}` +
                  (r.manual_weight ? " (manual weight)" : "")],
    ["stable", r.stable],
    ["in stage", r.seconds_in_stage !== undefined ? `${Math.round(r.seconds_in_stage)} s` : null],
    ["bake left", r.bake_seconds_left ? `${Math.ceil(r.bake_seconds_left)} s` : null],
    ["requests needed", r.requests_needed ? String(r.requests_needed) : null],
    ["automation", r.automation],
    ["approval", r.pending_approval ? "waiting for an operator to promote" : null],
    ["durable", r.durable === false ? "NO: a rollback is applied but not yet recorded" : null],
    ["last reason", r.last_reason || null],
  ].filter(([, value]) => value);
  return el("div", { class: "rollout" }, stages,
    el("dl", {}, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
}

function gateTable(r) {
  if (!r.gates?.length) return el("p", { class: "gates-none" }, "no gate judged yet");
  return el("table", { class: "gates" },
    el("thead", {}, el("tr", {}, el("th", {}, "gate"), el("th", {}, "verdict"),
                         el("th", {}, "why"))),
    el("tbody", {}, r.gates.map((g) => el("tr", { data: { gate: g.gate } },
      el("td", {}, g.gate),
      el("td", { class: `verdict ${g.verdict}` }, g.verdict),
      el("td", {}, g.explanation)))));
}

// A gate's figure in its unit, read off the gate's name as rollout/gates names them.
function gateFigure(gate, x, signed = false) {
  if (x === undefined || x === null) return "unbounded";
  const sign = signed && x >= 0 ? "+" : "";
  if (gate.includes("tokens_per_second")) return `${sign}${x.toFixed(1)} tok/s`;
  if (/latency|ttft|time_per_token/.test(gate)) return `${sign}${(x * 1000).toFixed(1)} ms`;
  if (/rate|accuracy|agreement/.test(gate)) {
    return signed ? `${sign}${(x * 100).toFixed(2)} pts` : `${(x * 100).toFixed(2)} %`;
  }
  return `${sign}${x.toPrecision(3)}`;
}

// How the candidate compares with stable (x ratio, difference), and its confidence interval.
function gateEffect(g) {
  const effect = g.difference === null || g.difference === undefined ? "" :
    `${g.ratio === null ? "" : `x${g.ratio.toFixed(2)} `}(${gateFigure(g.gate, g.difference, true)}) `;
  return `${effect}[${gateFigure(g.gate, g.candidate_low)}, ${gateFigure(g.gate, g.candidate_high)}]`;
}

function seconds(s) {
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// The rollout's report: one row per stage it went through (GET .../report), with how each
// gated effect stood when the stage ended, and why it ended.
function reportPanel(report) {
  if (!report) return "";
  const head = el("tr", {}, ["stage", "weight", "time", "candidate reqs", "stable reqs",
                             "gates: verdict, effect vs stable [candidate interval]", "decision"]
    .map((h) => el("th", {}, h)));
  const rows = report.stages.map((s) => el("tr", { data: { stage: s.name } },
    el("td", {}, s.name),
    el("td", {}, percentOfBp(s.weight_bp)),
    el("td", {}, seconds(s.seconds)),
    el("td", {}, String(s.candidate_requests)),
    el("td", {}, String(s.stable_requests)),
    el("td", {}, s.gates.length ? el("ul", { class: "report-gates" }, s.gates.map((g) =>
      el("li", { title: g.explanation, data: { gate: g.gate } }, `${g.gate} `,
        el("span", { class: `verdict ${g.verdict}` }, g.verdict), ` ${gateEffect(g)}`)))
      : "not judged"),
    el("td", { class: "decision", title: s.decision?.text ?? "" },
      s.current ? "in progress" : (s.decision?.text ?? "–"))));
  return el("section", { class: "report" },
    el("h3", {}, "Report", report.complete_history ? "" :
      " (the event log no longer reaches back to the rollout's start)"),
    el("table", { class: "report" }, el("thead", {}, head), el("tbody", {}, rows)));
}

// The operator's buttons for one model's rollout, made once (so a half-typed weight or
// reason survives the redraws) and enabled by the rollout's phase.
function controlsFor(model) {
  const reason = el("input", { type: "text", placeholder: "reason (optional)", maxlength: 1024,
                               class: "reason" });
  const weight = el("input", { type: "number", min: 0, max: 100, step: 0.01, placeholder: "%",
                               class: "weight", "aria-label": "candidate weight in percent" });
  const path = (name) => `/api/v1/rollouts/${encodeURIComponent(model)}/${name}`;
  const send = async (label, method, name, extra) => {
    const body = { ...extra };
    if (reason.value.trim()) body.reason = reason.value.trim();
    setMessage(model, `${label}…`, "pending");
    try {
      const answer = await call(method, path(name), body);
      setMessage(model, `${label}: done (${answer.phase ?? "ok"}, stage ${answer.stage ?? "?"})`,
                 "ok");
      reason.value = "";
    } catch (e) {
      setMessage(model, `${label} refused: ${e.message}`, "error");
      if (e instanceof ApiError && e.status === 401) askForToken(e.message);
    }
    refresh();
  };
  const button = (label, command, onclick) =>
    el("button", { type: "button", data: { command }, onclick }, label);
  const buttons = {
    pause: button("Pause", "pause", () => send("Pause", "POST", "pause")),
    resume: button("Resume", "resume", () => send("Resume", "POST", "resume")),
    promote: button("Promote", "promote", () => send("Promote", "POST", "promote")),
    rollback: button("Roll back", "rollback", () => send("Roll back", "POST", "rollback")),
    weight: button("Set weight", "set_weight", () => {
      if (weight.value === "") {
        setMessage(model, "Set weight: give the candidate's weight in percent (0 to 100)", "error");
        return;
      }
      send("Set weight", "PUT", "weight", { percent: Number(weight.value) });
    }),
  };
  const root = el("div", { class: "controls" }, buttons.pause, buttons.resume, buttons.promote,
                  buttons.rollback, el("span", { class: "set-weight" }, weight, buttons.weight),
                  reason);
  const update = (r) => {
    const active = r && (r.phase === "progressing" || r.phase === "paused");
    buttons.pause.disabled = !(r && r.phase === "progressing");
    buttons.resume.disabled = !(r && r.phase === "paused");
    for (const b of [buttons.promote, buttons.rollback, buttons.weight]) b.disabled = !active;
  };
  return { root, update };
}

function setMessage(model, text, kind) {
  const card = state.cards.get(model);
  if (!card) return;
  card.message.textContent = text;
  card.message.dataset.kind = kind;
}

function drawTimeline() {
  $("timeline").replaceChildren(...state.events.map((e) =>
    el("li", { data: { id: e.id, type: e.type } },
      el("time", {}, clockTime(e.time_ms)), " ",
      el("span", { class: "model-name" }, e.model ?? ""), " ",
      el("span", { class: `type ${e.type}` }, e.type ?? "event"), " ",
      e.stage ? el("span", { class: "stage" }, e.stage) : "", " ",
      el("span", { class: "text" }, e.text ?? ""),
      e.actor ? el("span", { class: "actor" }, ` by ${e.actor}`) : "",
      e.reason ? el("span", { class: "reason" }, ` (${e.reason})`) : "")));
}

// --- Starting and stopping ---

function stop() {
  state.feed?.abort();
  state.feed = null;
  clearInterval(state.poll);
  state.poll = null;
  state.refreshAgain = false;
}

async function start() {
  stop();
  try {
    state.identity = await call("GET", "/api/v1/whoami");
  } catch (e) {
    failed(e);
    return;
  }
  $("token-form").hidden = true;
  showIdentity();
  try {
    await readAll();
    await loadHistory();
  } catch (e) {
    failed(e);
    return;
  }
  notice("");
  render();
  const feed = new AbortController();
  state.feed = feed;
  followEvents({
    since: state.lastEventId,
    signal: feed.signal,
    onEvent: (e) => { mergeEvents([e]); drawTimeline(); refresh(); },
    onState: (name, message, status) => {
      feedState(name, name === "refused" ? `feed refused: ${message}` : name);
      if (name === "live") refresh();  // what changed while it was away
      if (status === 401) askForToken(message);
    },
  });
  state.poll = setInterval(refresh, pollMs);
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  saveToken($("token-input").value);
  start();
});

$("forget-token").addEventListener("click", () => {
  forgetToken();
  for (const card of state.cards.values()) card.root.remove();
  state.cards.clear();
  state.identity = null;
  $("identity").textContent = "";
  $("forget-token").hidden = true;
  askForToken("Token forgotten. Give a token to go on.");
});

start();
