// The Typographic page's word sweep and margin along alpha (see charts.py): drawn here from the server's numbers,
// again only when they change, so that typing a word costs the browser a small table and one SVG.
const SVG = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, String(v)));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawSweep(root, data) {
  const table = element("table", "pe-sweep");
  const head = element("tr");
  head.append(element("th", "pe-sweep-corner", "word written"));
  data.columns.forEach((c) => {
    const th = element("th");  // "center 12%" on two lines: position, height
    c.split(" ").forEach((part) => th.append(element("div", "", part)));
    head.append(th);
  });
  table.append(element("thead"));
  table.tHead.append(head);
  const body = element("tbody");
  data.words.forEach((word, i) => {
    const row = element("tr");
    row.append(element("th", "pe-sweep-word", word));
    data.columns.forEach((where, j) => {
      const p = data.p[i][j];
      const cell = element("td", "pe-sweep-cell", data.predicted[i][j]);
      cell.style.background = data.colour[i][j];
      cell.style.color = p < 0.2 || p > 0.85 ? "white" : "black";
      cell.dataset.p = String(p);
      cell.title = `word ${word}, ${where}: p(true) ${p.toFixed(2)}, predicted ${data.predicted[i][j]}`;
      row.append(cell);
    });
    body.append(row);
  });
  table.append(body);
  const scale = element("div", "pe-sweep-scale");
  scale.append(element("span", "", "p(true) 0"), element("span", "pe-sweep-bar"), element("span", "", "1"));
  root.replaceChildren(element("div", "pe-grid-title", data.title), table,
                       element("div", "pe-caption", "columns: where the word is written (position, height)"), scale);
}

function drawMargin(root, data) {
  const width = 640, height = 300, left = 56, right = width - 12, top = 12, bottom = height - 44;
  const [lo, hi] = data.y_range;
  const px = (a) => left + a * (right - left);
  const py = (m) => bottom - (m - lo) / (hi - lo) * (bottom - top);
  const svg = svgNode("svg", {class: "pe-margin", width, height, viewBox: `0 0 ${width} ${height}`,
                              "font-family": "sans-serif", "font-size": 11});
  svg.append(svgNode("rect", {x: left, y: top, width: right - left, height: bottom - top, fill: "white",
                              stroke: "#999"}));
  [0, 0.2, 0.4, 0.6, 0.8, 1].forEach((a) => {
    svg.append(svgNode("line", {x1: px(a), y1: top, x2: px(a), y2: bottom, stroke: "#e5e5e5"}),
               svgNode("text", {x: px(a), y: bottom + 15, "text-anchor": "middle"}, String(a)));
  });
  data.y_ticks.forEach((t) => {
    svg.append(svgNode("line", {x1: left, y1: py(t), x2: right, y2: py(t), stroke: "#e5e5e5"}),
               svgNode("text", {x: left - 6, y: py(t) + 4, "text-anchor": "end"}, String(t)));
  });
  svg.append(svgNode("line", {class: "pe-zero", x1: left, y1: py(0), x2: right, y2: py(0), stroke: "gray",
                              "stroke-dasharray": "6 4"}));
  svg.append(svgNode("text", {x: (left + right) / 2, y: height - 10, "text-anchor": "middle"},
                     "alpha (0 zero-shot, 1 fine-tuned)"));
  svg.append(svgNode("text", {transform: `translate(14 ${(top + bottom) / 2}) rotate(-90)`, "text-anchor": "middle"},
                     "logit margin: true - written"));
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];
  data.lines.forEach((line, i) => {
    const colour = colours[i % colours.length];
    const group = svgNode("g", {class: "pe-margin-line", "data-image": line.name});
    group.append(svgNode("polyline", {fill: "none", stroke: colour, "stroke-width": 2,
                                      points: line.alpha.map((a, k) => `${px(a)},${py(line.margin[k])}`).join(" ")}));
    line.alpha.forEach((a, k) => {
      const dot = svgNode("circle", {cx: px(a), cy: py(line.margin[k]), r: 3, fill: colour});
      dot.append(svgNode("title", {}, `${line.name}, alpha ${a}: margin ${line.margin[k].toFixed(2)}`));
      group.append(dot);
    });
    svg.append(group);
    svg.append(svgNode("rect", {x: left + 8, y: top + 6 + 14 * i, width: 10, height: 10, fill: colour}),
               svgNode("text", {x: left + 22, y: top + 15 + 14 * i}, line.name));
  });
  if (data.alpha !== null) {
    svg.append(svgNode("line", {class: "pe-alpha", x1: px(data.alpha), y1: top, x2: px(data.alpha), y2: bottom,
                                stroke: "red", "stroke-width": 1.5}),
               svgNode("text", {x: px(data.alpha) + 4, y: top + 12, fill: "red"}, `alpha ${data.alpha}`));
  }
  root.replaceChildren(svg);
}

export default function (component) {
  const {data, parentElement} = component;
  let root = parentElement.querySelector(":scope > .pe-root");
  if (!root) {
    root = element("div", "pe-root pe-chart");
    parentElement.append(root);
  }
  const drawn = JSON.stringify(data);
  if (root.__drawn === drawn) return;
  root.__drawn = drawn;
  root.dataset.kind = data.kind;
  (data.kind === "sweep" ? drawSweep : drawMargin)(root, data);
}
