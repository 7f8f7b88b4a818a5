// Building DOM nodes from data: text always goes in as text, never as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// A status as a coloured badge; the class says which colour (dashboard.css).
export function badge(status) {
  const text = status || "UNKNOWN";
  return h("span", { class: `badge s-${text.toLowerCase()}` }, text);
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "—";
}

// The API's times are UTC, written without a zone.
export function parseTime(iso) {
  return new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
}

export function clock(iso) {
  if (!iso) return "—";
  const when = parseTime(iso);
  return Number.isNaN(when.getTime()) ? iso : when.toLocaleTimeString([], { hourCycle: "h23" });
}

export function rate(value, unit) {
  const steps = ["", "k", "M", "G"];
  let v = value;
  let i = 0;
  while (v >= 1000 && i < steps.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${steps[i]}${unit}/s`;
}
