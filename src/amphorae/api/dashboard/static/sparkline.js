// Per-second rates from cumulative counters, and a small SVG line of their history.

const SVG = "http://www.w3.org/2000/svg";

// Rates are taken over the last WINDOW ms: the counters come from heartbeats and move in
// steps, which a rate between two refreshes alone shows as spikes and zeros.
const WINDOW = 5000;

export class Series {
  constructor(size = 60) {
    this.size = size;
    this.rates = []; // [{bytes, connections}] oldest first
    this.samples = []; // [{t, counters}] within the window, oldest first
  }

  // A sample of the listener's statistics taken at time t (ms). Counters that went back
  // (amphorae replaced, their counters new) start the window anew.
  add(t, stats) {
    const counters = {
      bytes: stats.bytes_in + stats.bytes_out,
      connections: stats.total_connections,
    };
    const previous = this.samples[this.samples.length - 1];
    if (previous && Object.keys(counters).some((k) => counters[k] < previous.counters[k])) {
      this.samples = [];
    }
    this.samples.push({ t, counters });
    while (this.samples.length > 2 && t - this.samples[1].t >= WINDOW) this.samples.shift();
    const first = this.samples[0];
    if (this.samples.length > 1 && t > first.t) {
      const seconds = (t - first.t) / 1000;
      const rates = {};
      for (const [key, value] of Object.entries(counters)) {
        rates[key] = (value - first.counters[key]) / seconds;
      }
      this.rates.push(rates);
      if (this.rates.length > this.size) this.rates.shift();
    }
    this.stats = stats;
  }

  values(key) {
    return this.rates.map((r) => r[key]);
  }
}

// A polyline of `values` scaled to their own maximum, with the area under it.
export function sparkline(values, { width = 150, height = 30, label = "" } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const max = Math.max(1e-9, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`);
  if (points.length === 1) points.push(`${width},${points[0].split(",")[1]}`);
  if (points.length) {
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("points", `0,${height} ${points.join(" ")} ${width},${height}`);
    area.setAttribute("class", "area");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", "line");
    svg.append(area, line);
  }
  return svg;
}
