// What the page explorers share (the Python side puts this before each explorer's own script, as one module).

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Mount an explorer: one root element per component, kept across reruns; ``start`` runs on the first mount and
// whenever ``identity`` changes (another run, set of runs or merge), then ``draw`` on every new data.
function mountExplorer(component, rootClass, identity, start, draw) {
  const {data, parentElement, setStateValue} = component;
  let root = parentElement.querySelector(":scope > .pe-root");
  if (!root) {
    root = element("div", rootClass);
    parentElement.append(root);
  }
  root.__data = data;
  root.__setState = setStateValue;
  if (root.dataset.identity !== identity) {
    root.dataset.identity = identity;
    start(root, data);
  }
  draw(root);
}

// One box per metric (label, value, change against zero-shot, sample line, then a line per ``extraClasses``),
// made again only when the number of metrics changes; returns the boxes for the caller's extra lines.
function drawMetrics(container, metrics, extraClasses = []) {
  if (container.children.length !== metrics.length) {
    container.replaceChildren(...metrics.map(() => {
      const box = element("div", "pe-metric");
      box.append(element("div", "pe-metric-label"), element("div", "pe-metric-value"),
                 element("div", "pe-metric-delta"), element("div", "pe-metric-sample"),
                 ...extraClasses.map((c) => element("div", c)));
      return box;
    }));
  }
  metrics.forEach((m, i) => {
    const box = container.children[i];
    box.dataset.task = m.task;
    box.children[0].textContent = m.label;
    box.children[1].textContent = m.value;
    box.children[2].textContent = m.delta;
    box.children[2].className = "pe-metric-delta " + (m.sign > 0 ? "pe-up" : m.sign < 0 ? "pe-down" : "");
    box.children[3].textContent = m.sample || "";
  });
  return [...container.children];
}
