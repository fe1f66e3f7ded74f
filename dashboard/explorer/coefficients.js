// The Task arithmetic page's coefficient explorer (see coefficients.py). Built once per set of runs and merge; a
// move onto a setting the server has sent only swaps text. The server is asked at once for a setting the browser
// lacks, and when a setting one slider step away is missing (at the move, and again 1, 2, 4 and 8 s after an
// answer that still lacks it); otherwise it learns the coefficients half a second after the last move.
const REPORT_AFTER_MS = 500;
const FOLLOW_UP_MS = 1000;
const FOLLOW_UPS = 4;

function keyOf(values) {
  return values.map((v) => v.toFixed(2)).join(",");
}

function shown(value) {
  return String(Number(value.toFixed(2)));
}

function onGrid(data, value) {
  const steps = Math.round((value - data.min) / data.step);
  return Math.min(data.max, Math.max(data.min, Number((data.min + steps * data.step).toFixed(4))));
}

function build(root, data) {
  root.replaceChildren();
  const sliders = data.tasks.map((task, i) => {
    const row = element("div", "pe-slider-row");
    const label = element("label", "pe-slider-label", `coefficient of tau(${task})`);
    const slider = element("input", "pe-slider");
    Object.assign(slider, {type: "range", min: String(data.min), max: String(data.max), step: String(data.step)});
    slider.setAttribute("aria-label", `coefficient of tau(${task})`);
    slider.dataset.task = task;
    const value = element("span", "pe-slider-value");
    row.append(label, slider, value);
    root.append(row);
    slider.addEventListener("input", () => {
      root.__values[i] = onGrid(root.__data, Number(slider.value));
      show(root);
      ask(root);
    });
    return {slider, value};
  });
  const status = element("p", "pe-status");
  const metrics = element("div", "pe-metrics");
  const note = element("p", "pe-note");
  root.append(status, metrics, note);
  root.__parts = {sliders, status, metrics, note};
}

function neighbours(data, values) {
  const out = [];
  values.forEach((v, i) => {
    [1, -1].forEach((sign) => {
      const moved = Number((v + sign * data.step).toFixed(4));
      if (moved >= data.min - 1e-9 && moved <= data.max + 1e-9) {
        const next = values.slice();
        next[i] = moved;
        out.push(keyOf(next));
      }
    });
  });
  return out;
}

function show(root) {
  const data = root.__data;
  const parts = root.__parts;
  const values = root.__values;
  parts.sliders.forEach(({slider, value}, i) => {
    slider.value = String(values[i]);
    value.textContent = shown(values[i]);
  });
  const entry = data.settings[keyOf(values)];
  const known = Object.keys(data.settings).length;
  parts.note.textContent = `${known} settings along these sliders computed (shared by all sessions, filled in the ` +
    "background as the class moves); a computed setting is redrawn by your browser alone.";
  if (entry === undefined) {
    parts.status.textContent = data.learns ? "This merge learns from data: compute it with the button below."
      : "Merging the task vectors and evaluating on the server…";
    root.classList.add("pe-waiting");
    return;
  }
  root.classList.remove("pe-waiting");
  parts.status.textContent = "";
  drawMetrics(parts.metrics, entry);
}

function send(root) {
  root.__asked += 1;  // a new value each time: the server reruns even when the coefficients are the same
  root.__setState("coefficients", {identity: root.__data.identity, values: root.__values.slice(), asked: root.__asked});
}

function lacksNextSteps(root) {
  const data = root.__data;
  return !data.learns && data.settings[keyOf(root.__values)] !== undefined &&
    neighbours(data, root.__values).some((k) => data.settings[k] === undefined);
}

function ask(root) {
  // after a move: at once for a setting this browser lacks, or for the first visit of a setting whose next steps
  // it lacks (the server then computes ahead from here); else the server learns the setting after the last move
  clearTimeout(root.__timer);
  const key = keyOf(root.__values);
  const retarget = lacksNextSteps(root) && !root.__retargeted.has(key);
  if (retarget) root.__retargeted.add(key);
  if (root.__data.settings[key] === undefined || retarget) {
    send(root);
  } else {
    root.__timer = setTimeout(() => send(root), REPORT_AFTER_MS);
  }
}

function followUp(root) {
  // when the server's answer still lacks the next steps, ask again after it has had time to compute them: 1, 2,
  // 4 then 8 s later (at most FOLLOW_UPS times per setting; a chain of timers, since an answer that brings
  // nothing new is not drawn again), so the next move is drawn here
  const key = keyOf(root.__values);
  const done = root.__followed.get(key) || 0;
  if (!lacksNextSteps(root) || done >= FOLLOW_UPS || root.__following === key) return;
  root.__followed.set(key, done + 1);
  root.__following = key;
  setTimeout(() => {
    root.__following = null;
    if (keyOf(root.__values) !== key || !lacksNextSteps(root)) return;
    send(root);
    followUp(root);
  }, FOLLOW_UP_MS * 2 ** done);
}

export default function (component) {
  mountExplorer(component, "pe-root pe-coefficients", component.data.identity, (root, data) => {
    build(root, data);  // first mount, other runs or merge: start where the server says
    root.__values = data.values.slice();
    root.__asked = 0;
    root.__retargeted = new Set();
    root.__followed = new Map();
    root.__following = null;
  }, (root) => {
    show(root);
    followUp(root);
  });
}
