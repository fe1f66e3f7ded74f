// The Patch page's alpha explorer (see __init__.py). Built once per run; a move only swaps text, captions and
// which SVG marker group is shown. Positions the server has not sent yet are asked for at once; otherwise the
// server learns the slider's alpha half a second after the last move (it needs it for the rest of the page).
const REPORT_AFTER_MS = 500;

function shown(alpha) {
  return String(Number(alpha.toFixed(2)));  // like Python's format(alpha, "g") at two decimals
}

function build(root, data) {
  root.replaceChildren();
  const sliderRow = element("div", "pe-slider-row");
  const label = element("label", "pe-slider-label", "alpha");
  const slider = element("input", "pe-slider");
  Object.assign(slider, {type: "range", min: "0", max: "1", step: String(data.step)});
  slider.setAttribute("aria-label", "alpha (0 = zero-shot, 1 = fine-tuned on the patch task)");
  const value = element("span", "pe-slider-value");
  sliderRow.append(label, slider, value);
  const ready = element("p", "pe-note pe-ready");
  const heading = element("h3", "pe-heading");
  const status = element("p", "pe-status");
  const metrics = element("div", "pe-metrics");
  const note = element("p", "pe-note", "The patch task is the one being fixed; the supported tasks are the ones " +
    "the model must keep doing well. Each task shows two figures: live, measured now on its first test images, and " +
    "the whole split, read from the run's sweep (the curves below and the Start page use it). They can differ by " +
    "a few points: the live sample is small.");
  const columns = element("div", "pe-columns");
  const left = element("div", "pe-left");
  const picture = element("div", "pe-frontier-box");
  const pictureCaption = element("p", "pe-caption pe-frontier-caption");
  const pictureNote = element("p", "pe-note pe-frontier-note");
  left.append(picture, pictureCaption, pictureNote);
  const right = element("div", "pe-right");
  const gridTitle = element("p", "pe-grid-title");
  const grid = element("div", "pe-grid");
  data.thumbs.forEach((src) => {
    const figure = element("figure", "pe-sample");
    const img = element("img");
    Object.assign(img, {src, width: 96, height: 96, alt: "test image"});
    figure.append(img, element("figcaption", "pe-caption"));
    grid.append(figure);
  });
  right.append(gridTitle, grid);
  columns.append(left, right);
  root.append(sliderRow, ready, heading, status, metrics, note, columns);
  root.__parts = {slider, value, ready, heading, status, metrics, picture, pictureCaption, pictureNote, gridTitle, grid};
  slider.addEventListener("input", () => {
    root.__alpha = Number(slider.value);
    show(root);
    report(root, root.__data.positions[root.__alpha.toFixed(2)] === undefined);
  });
}

function drawFrontier(root) {
  const {picture, pictureNote} = root.__parts;
  const data = root.__data;
  if (root.__svg !== data.svg) {
    picture.innerHTML = data.svg || "";  // the server's own SVG (dashboard.figures.frontier_svg), never user text
    root.__svg = data.svg;
  }
  pictureNote.textContent = data.frontier_note || "";
}

function show(root) {
  const data = root.__data;
  const parts = root.__parts;
  const alpha = root.__alpha;
  const entry = data.positions[alpha.toFixed(2)];
  const whole = (data.whole || {})[alpha.toFixed(2)];
  const swept = Object.keys(data.whole || {}).length > 0;
  parts.slider.value = String(alpha);
  parts.value.textContent = shown(alpha);
  const known = Object.keys(data.positions).length;
  parts.ready.textContent = `${known} of ${data.n_positions} slider positions computed for this run (shared by ` +
    "all sessions, filled in the background); a computed position is redrawn by your browser alone.";
  if (entry === undefined) {
    parts.status.textContent = `alpha ${shown(alpha)}: interpolating the weights and evaluating on the server…`;
    root.classList.add("pe-waiting");
    return;
  }
  root.classList.remove("pe-waiting");
  parts.status.textContent = "";
  const chosen = data.chosen === null ? "" : ` (paper's choice on val: ${shown(data.chosen)})`;
  parts.heading.textContent = `Live accuracy at alpha = ${shown(alpha)}${chosen}`;
  drawMetrics(parts.metrics, entry.metrics, ["pe-metric-whole"]).forEach((box, i) => {
    const m = entry.metrics[i];
    const w = whole && whole.tasks[m.task];
    box.children[4].textContent = w ? `whole ${data.split} split (${w.n} images, from the sweep): ${w.value}, ${w.delta}`
      : swept ? `whole ${data.split} split: not swept at alpha ${shown(alpha)}` : "";
  });
  parts.picture.querySelectorAll(".pe-marker").forEach((g) => {
    g.setAttribute("display", g.dataset.alpha === alpha.toFixed(2) ? "inline" : "none");
  });
  parts.pictureCaption.textContent = data.svg ? `Frontier (${data.split}) at alpha ${shown(alpha)}: live subsample ` +
    `patch ${entry.live_text[0]}, supported ${entry.live_text[1]}` +
    (whole ? `; whole ${data.split} split: patch ${whole.patch}, supported ${whole.supported}` : "") : "";
  parts.gridTitle.textContent = `Samples of ${data.patch}: zero-shot vs alpha = ${shown(alpha)}`;
  [...parts.grid.children].forEach((figure, i) => {
    const caption = entry.captions[i] || "";
    figure.lastChild.textContent = caption;
    figure.classList.toggle("pe-wrong", caption.endsWith("(WRONG)"));
  });
}

function report(root, now) {
  clearTimeout(root.__timer);
  const send = () => {
    if (root.__reported === root.__alpha) return;
    root.__reported = root.__alpha;
    root.__setState("alpha", {run: root.__data.run, alpha: root.__alpha});
  };
  if (now) send(); else root.__timer = setTimeout(send, REPORT_AFTER_MS);
}

export default function (component) {
  mountExplorer(component, "pe-root", component.data.run, (root, data) => {  // first mount, or another run
    build(root, data);
    root.__alpha = data.alpha;  // start where the server says
    root.__reported = data.alpha;
    root.__svg = undefined;
  }, (root) => {
    drawFrontier(root);
    show(root);
  });
}
