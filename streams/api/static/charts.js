// Charts drawn as SVG by this small module: no chart library, nothing to fetch.
const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.firstChild.remove();
}

// Drawn in the svg's own pixel width, so text keeps its size on a phone; redrawn
// when that width changes.
const drawings = new WeakMap();
const resized = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const drawing = drawings.get(entry.target);
    if (drawing && Math.abs(widthOf(entry.target) - drawing.width) > 1) drawing.draw();
  }
});

function widthOf(svg) {
  return Math.max(280, Math.round(svg.getBoundingClientRect().width) || 600);
}

function remember(svg, draw) {
  if (!drawings.has(svg)) resized.observe(svg);
  drawings.set(svg, { width: widthOf(svg), draw });
}

// Horizontal bars, one row per entry ({key, label, value}); a zero row keeps its label
// (a histogram's empty bucket is information) but draws no bar.
export function barChart(svg, entries, options = {}) {
  const { empty = "nothing yet", format = String } = options;
  remember(svg, () => barChart(svg, entries, options));
  clear(svg);
  const width = widthOf(svg);
  const labelWidth = Math.min(120, Math.round(width * 0.3));
  const valueWidth = 60;
  const row = 24;
  if (!entries.length) {
    svg.setAttribute("viewBox", `0 0 ${width} ${row * 2}`);
    svg.append(svgEl("text", { x: 0, y: row, class: "chart-empty" }, empty));
    svg.setAttribute("aria-label", `${svg.dataset.title}: ${empty}`);
    return;
  }
  const max = Math.max(1, ...entries.map((e) => e.value));
  const span = width - labelWidth - valueWidth;
  svg.setAttribute("viewBox", `0 0 ${width} ${entries.length * row + 4}`);
  entries.forEach((entry, index) => {
    const y = index * row + 2;
    svg.append(svgEl("text", { x: labelWidth - 8, y: y + 15, class: "chart-label",
                               "text-anchor": "end" }, entry.label));
    const length = (entry.value / max) * span;
    if (entry.value > 0) {
      const bar = svgEl("rect", { x: labelWidth, y: y + 3, width: Math.max(length, 1.5),
                                  height: row - 8, rx: 2, class: "bar",
                                  "data-key": entry.key, "data-value": entry.value });
      bar.append(svgEl("title", {}, `${entry.label}: ${format(entry.value)}`));
      svg.append(bar);
    }
    svg.append(svgEl("text", { x: labelWidth + length + 6, y: y + 15, class: "chart-value" },
                     format(entry.value)));
  });
  svg.setAttribute("aria-label", `${svg.dataset.title}: ` +
    entries.map((e) => `${e.label} ${format(e.value)}`).join(", "));
}

// Lines over time: points [{start (ISO), <metric>: n}], one line per series name.
export function lineChart(svg, points, series, options = {}) {
  const { format = String, timeLabel = String } = options;
  remember(svg, () => lineChart(svg, points, series, options));
  clear(svg);
  const width = widthOf(svg);
  const height = 240;
  const left = 48;
  const right = 12;
  const top = 12;
  const bottom = 28;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  if (!points.length) {
    svg.append(svgEl("text", { x: left, y: height / 2, class: "chart-empty" }, "no events yet"));
    svg.setAttribute("aria-label", `${svg.dataset.title}: no events yet`);
    return;
  }
  const times = points.map((p) => Date.parse(p.start));
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const max = Math.max(1, ...points.flatMap((p) => series.map((s) => p[s])));
  const x = (t) => left + (t1 === t0 ? (width - left - right) / 2
    : ((t - t0) / (t1 - t0)) * (width - left - right));
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  // axes: 0 and the maximum, the first and the last window
  svg.append(svgEl("line", { x1: left, y1: y(0), x2: width - right, y2: y(0), class: "axis" }));
  svg.append(svgEl("line", { x1: left, y1: y(max), x2: width - right, y2: y(max),
                             class: "gridline" }));
  svg.append(svgEl("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end",
                             class: "chart-label" }, "0"));
  svg.append(svgEl("text", { x: left - 6, y: y(max) + 4, "text-anchor": "end",
                             class: "chart-label" }, format(max)));
  svg.append(svgEl("text", { x: left, y: height - 8, class: "chart-label" },
                   timeLabel(points[0].start)));
  if (points.length > 1) {
    svg.append(svgEl("text", { x: width - right, y: height - 8, "text-anchor": "end",
                               class: "chart-label" }, timeLabel(points[points.length - 1].start)));
  }
  for (const name of series) {
    const coordinates = points.map((p, i) => `${x(times[i]).toFixed(1)},${y(p[name]).toFixed(1)}`);
    const total = points.reduce((sum, p) => sum + p[name], 0);
    if (points.length === 1) {
      const [cx, cy] = coordinates[0].split(",");
      svg.append(svgEl("circle", { cx, cy, r: 4, class: `series series-${name}`,
                                   "data-series": name, "data-total": total }));
    } else {
      svg.append(svgEl("polyline", { points: coordinates.join(" "), fill: "none",
                                     class: `series series-${name}`, "data-series": name,
                                     "data-total": total }));
    }
  }
  svg.setAttribute("aria-label", `${svg.dataset.title}, ${points.length} windows from ` +
    `${timeLabel(points[0].start)}: ` +
    series.map((s) => `${s} ${format(points.reduce((sum, p) => sum + p[s], 0))}`).join(", "));
}
