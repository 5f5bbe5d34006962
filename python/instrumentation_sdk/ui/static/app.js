// The dashboard's pages. Span data is untrusted (prompts from the public, model names, metadata):
// it only ever reaches the page as text (textContent, text nodes, setAttribute of plain
// attributes), never parsed as HTML, and never evaluated; the server's CSP forbids inline script.
"use strict";

(function () {
  const main = document.getElementById("main");
  const SVG_NS = "http://www.w3.org/2000/svg";
  const RANGES = [
    ["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "24 hours"],
    ["7d", "7 days"], ["30d", "30 days"],
  ];
  const RANGE_NS = {
    "15m": 15 * 60e9, "1h": 3600e9, "6h": 6 * 3600e9, "24h": 86400e9,
    "7d": 7 * 86400e9, "30d": 30 * 86400e9,
  };
  const FILTERS = ["model", "provider", "service", "status", "session_id", "user_id", "q"];
  const LIVE_INTERVAL_MS = 2000;

  // -- DOM helpers: text only ------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // -- formatting ------------------------------------------------------------------------------

  function fmtMs(value) {
    if (value === null || value === undefined) return "-";
    if (value >= 10000) return (value / 1000).toFixed(1) + " s";
    if (value >= 100) return value.toFixed(0) + " ms";
    return value.toFixed(1) + " ms";
  }
  function fmtInt(value) {
    return value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US");
  }
  function fmtCost(value) {
    if (value === null || value === undefined) return "-";
    // A short call costs millionths of a dollar: show them rather than "$0.0000".
    return "$" + (value >= 1 ? value.toFixed(2) : value >= 0.01 ? value.toFixed(4) : value.toFixed(6));
  }
  function fmtPct(value) {
    return value === null || value === undefined ? "-" : (value * 100).toFixed(1) + "%";
  }
  function fmtTime(unixNano) {
    const date = new Date(Number(BigInt(unixNano) / 1000000n));
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }
  function fmtValue(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  // -- the API ---------------------------------------------------------------------------------

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") query.set(key, value);
    }
    const url = path + (query.toString() ? "?" + query : "");
    const response = await fetch(url, { credentials: "same-origin" });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) {
      const error = new Error(body.detail || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showStoreError(error) {
    const banner = document.getElementById("store-error");
    if (error) {
      banner.textContent = error.message;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  // -- charts (SVG, drawn here) -------------------------------------------------------------------

  function chart(title, points, series, format, kind) {
    const width = 360, height = 150, left = 56, right = 8, top = 8, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    let max = 0;
    for (const point of points) {
      for (const s of series) {
        const v = point[s.key];
        if (v !== null && v !== undefined && v > max) max = v;
      }
    }
    const root = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, class: "chart-svg", role: "img", "aria-label": title,
    });
    const n = Math.max(points.length, 1);
    const x = (i) => left + (plotW * (i + 0.5)) / n;
    const y = (v) => top + plotH - (max > 0 ? (plotH * v) / max : 0);
    root.append(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: "axis" }));
    root.append(svg("line", { x1: left, x2: width - right, y1: top, y2: top, class: "grid" }));
    root.append(svg("text", { x: left - 4, y: top + 4, class: "tick end", text: format(max) }));
    root.append(svg("text", { x: left - 4, y: top + plotH, class: "tick end", text: format(0) }));
    if (points.length) {
      root.append(svg("text", { x: left, y: height - 6, class: "tick", text: fmtTime(points[0].start_unix_nano).slice(5, 16) }));
      root.append(svg("text", {
        x: width - right, y: height - 6, class: "tick end",
        text: fmtTime(points[points.length - 1].start_unix_nano).slice(5, 16),
      }));
    }
    series.forEach((s, index) => {
      if (kind === "bar") {
        const barW = Math.max(1, (plotW / n) * (series.length > 1 ? 0.45 : 0.8));
        points.forEach((point, i) => {
          const v = point[s.key];
          if (!v) return;
          const rect = svg("rect", {
            x: x(i) - barW / 2 + (series.length > 1 ? (index - 0.5) * barW : 0),
            y: y(v), width: barW, height: top + plotH - y(v), class: s.cls,
          });
          rect.append(svg("title", { text: `${s.label}: ${format(v)} at ${fmtTime(point.start_unix_nano)}` }));
          root.append(rect);
        });
      } else {
        let d = "";
        let pen = false;
        points.forEach((point, i) => {
          const v = point[s.key];
          if (v === null || v === undefined) { pen = false; return; }
          d += `${pen ? "L" : "M"}${x(i).toFixed(1)} ${y(v).toFixed(1)} `;
          pen = true;
          const dot = svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 1.8, class: "dot " + s.cls });
          dot.append(svg("title", { text: `${s.label}: ${format(v)} at ${fmtTime(point.start_unix_nano)}` }));
          root.append(dot);
        });
        if (d) root.append(svg("path", { d, class: "line " + s.cls }));
      }
    });
    const legend = el("div", { class: "legend" },
      series.map((s) => el("span", { class: "key " + s.cls }, s.label)));
    return el("figure", { class: "chart", "data-chart": title },
      el("figcaption", { text: title }), root, legend);
  }

  // -- state in the URL ------------------------------------------------------------------------

  function readState() {
    const params = new URLSearchParams(location.search);
    // `since` as the API names it is taken too (a link made from an API query).
    const state = { range: params.get("range") || params.get("since") || "1h" };
    if (!(state.range in RANGE_NS)) state.range = "1h";
    for (const name of FILTERS) state[name] = params.get(name) || "";
    return state;
  }

  function writeState(state) {
    const params = new URLSearchParams();
    if (state.range !== "1h") params.set("range", state.range);
    for (const name of FILTERS) if (state[name]) params.set(name, state[name]);
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  function filterParams(state) {
    const params = { since: state.range };
    for (const name of FILTERS) if (state[name]) params[name] = state[name];
    return params;
  }

  // -- overview --------------------------------------------------------------------------------

  function overview() {
    const state = readState();
    clear(main);
    const form = el("form", { class: "filters", id: "filters" });
    const controls = {};
    function select(name, label, options) {
      const control = el("select", { name, id: "filter-" + name },
        el("option", { value: "" }, "all"),
        options.map(([value, text]) => el("option", { value }, text)));
      control.value = state[name] || "";
      controls[name] = control;
      return el("label", {}, label, control);
    }
    function input(name, label, placeholder) {
      const control = el("input", { name, id: "filter-" + name, placeholder, value: state[name] });
      controls[name] = control;
      return el("label", {}, label, control);
    }
    const range = el("select", { name: "range", id: "filter-range" },
      RANGES.map(([value, text]) => el("option", { value }, text)));
    range.value = state.range;
    form.append(
      el("label", {}, "Time range", range),
      select("model", "Model", []),
      select("provider", "Provider", []),
      select("service", "Service", []),
      select("status", "Status", [["ok", "ok"], ["error", "error"], ["unset", "unset"]]),
      input("session_id", "Session", "session id"),
      input("user_id", "User", "user id"),
      input("q", "Search", "name or error text"),
    );
    form.addEventListener("change", () => {
      state.range = range.value;
      for (const name of FILTERS) state[name] = controls[name].value.trim();
      writeState(state);
      refresh();
    });
    form.addEventListener("submit", (event) => event.preventDefault());

    const cards = el("section", { class: "cards", id: "cards" });
    const charts = el("section", { class: "charts", id: "charts" });
    const byModel = el("section", { class: "table-box", id: "by-model" });
    const byService = el("section", { class: "table-box", id: "by-service" });
    const recent = el("section", { class: "table-box", id: "recent" });
    main.append(form, cards, charts, el("div", { class: "two" }, byModel, byService), recent);

    function setOptions(name, values) {
      const control = controls[name];
      const current = state[name];
      const seen = new Set([""]);
      for (const option of Array.from(control.options)) if (option.value) option.remove();
      for (const value of [...values, current]) {
        if (value === null || value === undefined || seen.has(value)) continue;
        seen.add(value);
        control.append(el("option", { value }, value));
      }
      control.value = current;
    }

    let newest = null;
    let refreshing = false;
    let again = false; // filters changed while a refresh was in flight: run once more after it
    async function refresh() {
      if (refreshing) { again = true; return; }
      refreshing = true;
      again = false;
      try {
        const params = filterParams(state);
        const [models, services, providers, series, spans] = await Promise.all([
          api("/api/stats", { ...params, by: "model" }),
          api("/api/stats", { ...params, by: "service" }),
          api("/api/stats", { ...params, by: "provider" }),
          api("/api/timeseries", { ...params, points: 60 }),
          api("/api/spans", { ...params, limit: 50 }),
        ]);
        showStoreError(null);
        setOptions("model", models.groups.map((g) => g.group));
        setOptions("service", services.groups.map((g) => g.group));
        setOptions("provider", providers.groups.map((g) => g.group).filter((g) => g !== null));
        renderCards(cards, models.total);
        renderCharts(charts, series.points);
        renderGroups(byModel, "By model", "model", models.groups);
        renderGroups(byService, "By service", "service", services.groups);
        renderSpans(recent, spans, params);
        newest = spans.spans.length ? spans.spans[0].span_id : null;
        document.body.dataset.loaded = String(Date.now());
      } catch (error) {
        showStoreError(error);
      } finally {
        refreshing = false;
        if (again) refresh();
      }
    }

    async function poll() {
      if (document.visibilityState === "visible") {
        try {
          const head = await api("/api/spans", { ...filterParams(state), limit: 1 });
          const first = head.spans.length ? head.spans[0].span_id : null;
          if (first !== newest) await refresh();
        } catch (error) {
          showStoreError(error);
        }
      }
      setTimeout(poll, LIVE_INTERVAL_MS);
    }

    refresh().then(() => setTimeout(poll, LIVE_INTERVAL_MS));
  }

  function card(label, value, id) {
    return el("div", { class: "card", id }, el("div", { class: "card-label" }, label),
      el("div", { class: "card-value" }, value));
  }

  function renderCards(box, total) {
    clear(box);
    box.append(
      card("Requests", fmtInt(total.count), "card-requests"),
      card("Error rate", fmtPct(total.error_rate), "card-errors"),
      card("Latency p50 / p95 / p99", `${fmtMs(total.p50_ms)} / ${fmtMs(total.p95_ms)} / ${fmtMs(total.p99_ms)}`, "card-latency"),
      card("TTFT p50 / p95", `${fmtMs(total.ttft_p50_ms)} / ${fmtMs(total.ttft_p95_ms)}`, "card-ttft"),
      card("Tokens in / out", `${fmtInt(total.prompt_tokens)} / ${fmtInt(total.completion_tokens)}`, "card-tokens"),
      card("Cost", fmtCost(total.cost_usd), "card-cost"),
    );
  }

  function renderCharts(box, points) {
    clear(box);
    const count = (v) => fmtInt(Math.round(v));
    box.append(
      chart("Requests", points, [{ key: "count", label: "requests", cls: "s1" }, { key: "errors", label: "errors", cls: "s3" }], count, "bar"),
      chart("Error rate", points, [{ key: "error_rate", label: "error rate", cls: "s3" }], fmtPct),
      chart("Latency", points, [
        { key: "p50_ms", label: "p50", cls: "s1" }, { key: "p95_ms", label: "p95", cls: "s2" },
        { key: "p99_ms", label: "p99", cls: "s3" }], fmtMs),
      chart("Time to first token", points, [
        { key: "ttft_p50_ms", label: "p50", cls: "s1" }, { key: "ttft_p95_ms", label: "p95", cls: "s2" }], fmtMs),
      chart("Tokens", points, [
        { key: "prompt_tokens", label: "prompt", cls: "s1" },
        { key: "completion_tokens", label: "completion", cls: "s2" }], count, "bar"),
      chart("Cost", points, [{ key: "cost_usd", label: "USD", cls: "s4" }], fmtCost, "bar"),
    );
  }

  function table(headers, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows));
  }

  function renderGroups(box, title, by, groups) {
    clear(box);
    box.append(el("h2", {}, title));
    if (!groups.length) {
      box.append(el("p", { class: "muted" }, "No spans in this range."));
      return;
    }
    box.append(table(
      [by, "requests", "errors", "p50", "p95", "p99", "TTFT p50", "tokens in", "tokens out", "cost"],
      groups.map((g) => el("tr", { "data-group": g.group === null ? "" : g.group },
        el("td", { class: "model", title: g.group }, g.group === null ? "-" : g.group),
        el("td", { class: "num" }, fmtInt(g.count)),
        el("td", { class: "num" }, fmtPct(g.error_rate)), el("td", { class: "num" }, fmtMs(g.p50_ms)),
        el("td", { class: "num" }, fmtMs(g.p95_ms)), el("td", { class: "num" }, fmtMs(g.p99_ms)),
        el("td", { class: "num" }, fmtMs(g.ttft_p50_ms)),
        el("td", { class: "num" }, fmtInt(g.prompt_tokens)),
        el("td", { class: "num" }, fmtInt(g.completion_tokens)),
        el("td", { class: "num" }, fmtCost(g.cost_usd)))),
      { class: "groups", "data-by": by }));
  }

  function spanRow(span) {
    const error = [span.error_type, span.error_message].filter(Boolean).join(": ");
    const tokens = (span.metadata || {});
    return el("tr", { class: span.status === "error" ? "error" : "", "data-span": span.span_id },
      el("td", { class: "time" }, fmtTime(span.start_time_unix_nano)),
      el("td", {}, el("a", { href: "/traces/" + encodeURIComponent(span.trace_id), class: "mono" }, span.trace_id.slice(0, 8))),
      el("td", { class: "name" }, span.name),
      el("td", { class: "model", title: span.model }, span.model),
      el("td", {}, span.service_name || "-"),
      el("td", {}, el("span", { class: "status " + span.status }, span.status)),
      el("td", { class: "num" }, fmtMs(span.duration_ms)),
      el("td", { class: "num" }, fmtMs(span.time_to_first_token_ms)),
      el("td", { class: "num" }, `${fmtInt(tokens.prompt_tokens)} / ${fmtInt(tokens.completion_tokens)}`),
      el("td", { class: "num" }, fmtCost(span.cost_usd)),
      el("td", { class: "err" }, error));
  }

  function renderSpans(box, page, params) {
    clear(box);
    box.append(el("h2", {}, "Recent spans"));
    if (!page.spans.length) {
      box.append(el("p", { class: "muted" }, "No spans match."));
      return;
    }
    const body = el("tbody", {}, page.spans.map(spanRow));
    box.append(el("table", { id: "spans-table" },
      el("thead", {}, el("tr", {}, ["time", "trace", "name", "model", "service", "status",
        "duration", "TTFT", "tokens in/out", "cost", "error"].map((h) => el("th", {}, h)))),
      body));
    let cursor = page.next_cursor;
    if (cursor) {
      const more = el("button", { type: "button", id: "older" }, "Older spans");
      more.addEventListener("click", async () => {
        try {
          const next = await api("/api/spans", { ...params, limit: 50, cursor });
          append(body, next.spans.map(spanRow));
          cursor = next.next_cursor;
          if (!cursor) more.remove();
        } catch (error) {
          showStoreError(error);
        }
      });
      box.append(more);
    }
  }

  // -- one trace: tree and waterfall -----------------------------------------------------------

  function tree(spans) {
    const ids = new Set(spans.map((s) => s.span_id));
    const children = new Map();
    for (const span of spans) {
      const parent = ids.has(span.parent_span_id) ? span.parent_span_id : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    }
    const ordered = [];
    const seen = new Set();
    const stack = (children.get(null) || []).slice().reverse().map((s) => [s, 0]);
    while (stack.length) {
      const [span, depth] = stack.pop();
      if (seen.has(span.span_id)) continue;
      seen.add(span.span_id);
      ordered.push([span, depth]);
      for (const child of (children.get(span.span_id) || []).slice().reverse()) stack.push([child, depth + 1]);
    }
    return ordered;
  }

  async function tracePage(traceId) {
    clear(main);
    let data;
    try {
      data = await api("/api/traces/" + encodeURIComponent(traceId));
    } catch (error) {
      main.append(el("h1", {}, "Trace"), el("p", { class: "error-text", id: "trace-error" }, error.message));
      return;
    }
    const spans = data.spans;
    const start = spans.reduce((m, s) => (BigInt(s.start_time_unix_nano) < m ? BigInt(s.start_time_unix_nano) : m), BigInt(spans[0].start_time_unix_nano));
    const end = spans.reduce((m, s) => (BigInt(s.end_time_unix_nano) > m ? BigInt(s.end_time_unix_nano) : m), BigInt(spans[0].end_time_unix_nano));
    const total = Math.max(Number(end - start) / 1e6, 1e-6);
    const services = Array.from(new Set(spans.map((s) => s.service_name || "-")));
    const cost = spans.reduce((sum, s) => (s.cost_usd === null ? sum : (sum || 0) + s.cost_usd), null);
    const session = spans.map((s) => s.session_id).find(Boolean);
    main.append(
      el("h1", {}, "Trace ", el("span", { class: "mono", id: "trace-id" }, data.trace_id)),
      el("p", { class: "muted" },
        `${spans.length} spans, ${fmtMs(total)}, services: ${services.join(", ")}, cost ${fmtCost(cost)}`,
        session ? " - session " : "",
        session ? el("a", { href: "/sessions/" + encodeURIComponent(session) }, session) : ""),
    );
    const detail = el("aside", { class: "detail", id: "span-detail" },
      el("p", { class: "muted" }, "Click a span for its metadata, events and content."));
    const rows = tree(spans).map(([span, depth]) => {
      const offset = Number(BigInt(span.start_time_unix_nano) - start) / 1e6;
      const bar = el("div", { class: "bar " + span.status });
      bar.style.left = `${(100 * offset) / total}%`;
      bar.style.width = `${Math.max((100 * span.duration_ms) / total, 0.3)}%`;
      const lane = el("div", { class: "lane" }, bar);
      if (span.time_to_first_token_ms !== null) {
        const marker = el("div", { class: "ttft", title: `first token after ${fmtMs(span.time_to_first_token_ms)}` });
        marker.style.left = `${(100 * (offset + span.time_to_first_token_ms)) / total}%`;
        lane.append(marker);
      }
      const name = el("td", { class: "tree-name" }, el("span", { class: "depth" }, "\u00a0\u00a0".repeat(depth) + (depth ? "\u2514 " : "")), span.name);
      const row = el("tr", { class: "span-row " + (span.status === "error" ? "error" : ""), "data-span": span.span_id, "data-depth": depth, tabindex: 0 },
        name,
        el("td", {}, span.service_name || "-"),
        el("td", { class: "model", title: span.model }, span.model),
        el("td", {}, el("span", { class: "status " + span.status }, span.status)),
        el("td", { class: "num" }, `+${fmtMs(offset)}`),
        el("td", { class: "num" }, fmtMs(span.duration_ms)),
        el("td", { class: "num" }, `${fmtInt((span.metadata || {}).prompt_tokens)} / ${fmtInt((span.metadata || {}).completion_tokens)}`),
        el("td", { class: "num" }, fmtCost(span.cost_usd)),
        el("td", { class: "waterfall" }, lane));
      const open = () => {
        for (const other of main.querySelectorAll("tr.selected")) other.classList.remove("selected");
        row.classList.add("selected");
        renderDetail(detail, span);
      };
      row.addEventListener("click", open);
      row.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
      return row;
    });
    main.append(el("div", { class: "trace-layout" },
      el("div", { class: "table-box" }, table(
        ["span", "service", "model", "status", "start", "duration", "tokens in/out", "cost", "waterfall"],
        rows, { id: "trace-table" })),
      detail));
    const firstError = spans.find((s) => s.status === "error");
    const initial = firstError || spans[0];
    main.querySelector(`tr[data-span="${CSS.escape(initial.span_id)}"]`).click();
    document.body.dataset.loaded = String(Date.now());
  }

  function renderDetail(box, span) {
    clear(box);
    const fields = [
      ["name", span.name], ["span id", span.span_id], ["parent", span.parent_span_id || "-"],
      ["model", span.model], ["provider", span.provider || "-"], ["service", span.service_name || "-"],
      ["status", span.status], ["start", fmtTime(span.start_time_unix_nano)],
      ["duration", fmtMs(span.duration_ms)], ["time to first token", fmtMs(span.time_to_first_token_ms)],
      ["cost", fmtCost(span.cost_usd)], ["user", span.user_id || "-"], ["session", span.session_id || "-"],
    ];
    box.append(el("h2", {}, span.name));
    if (span.status === "error" || span.error_message) {
      box.append(el("div", { class: "error-text", id: "span-error" },
        [span.error_type, span.error_message].filter(Boolean).join(": ")));
    }
    box.append(el("table", { class: "kv" }, el("tbody", {},
      fields.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))));
    const metadata = Object.entries(span.metadata || {});
    box.append(el("h3", {}, "Metadata"));
    box.append(metadata.length
      ? el("table", { class: "kv", id: "span-metadata" }, el("tbody", {},
        metadata.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, el("pre", {}, fmtValue(v)))))))
      : el("p", { class: "muted" }, "none"));
    box.append(el("h3", {}, "Events"));
    const events = span.events || [];
    box.append(events.length
      ? el("ul", { class: "events" }, events.map((event) => el("li", {},
        el("strong", {}, String(event.name)), ` +${fmtMs(Number(BigInt(event.time_unix_nano) - BigInt(span.start_time_unix_nano)) / 1e6)} `,
        el("pre", {}, fmtValue(event.attributes || {})))))
      : el("p", { class: "muted" }, "none"));
    for (const key of ["prompt", "completion"]) {
      box.append(el("h3", {}, key[0].toUpperCase() + key.slice(1)));
      box.append(span[key] === null || span[key] === undefined
        ? el("p", { class: "muted" }, "not captured (capture_content is off)")
        : el("pre", { class: "content", id: "span-" + key }, fmtValue(span[key])));
    }
  }

  // -- one session -----------------------------------------------------------------------------

  async function sessionPage(sessionId) {
    clear(main);
    main.append(el("h1", {}, "Session ", el("span", { class: "mono" }, sessionId)));
    let data;
    try {
      data = await api("/api/sessions/" + encodeURIComponent(sessionId));
    } catch (error) {
      main.append(el("p", { class: "error-text" }, error.message));
      return;
    }
    const total = data.total;
    main.append(el("p", { class: "muted", id: "session-total" },
      `${fmtInt(total.traces)} traces, ${fmtInt(total.spans)} spans, ${fmtInt(total.errors)} errors, ` +
      `tokens ${fmtInt(total.prompt_tokens)} / ${fmtInt(total.completion_tokens)}, cost ${fmtCost(total.cost_usd)}`));
    main.append(el("div", { class: "table-box" }, table(
      ["#", "time", "trace", "first span", "model", "spans", "duration", "errors", "tokens in/out", "cost"],
      data.traces.map((t, i) => el("tr", { class: t.errors ? "error" : "" },
        el("td", { class: "num" }, String(i + 1)),
        el("td", {}, fmtTime(t.start_time_unix_nano)),
        el("td", {}, el("a", { href: "/traces/" + encodeURIComponent(t.trace_id), class: "mono" }, t.trace_id.slice(0, 8))),
        el("td", {}, t.name || "-"), el("td", { class: "model" }, t.model || "-"),
        el("td", { class: "num" }, fmtInt(t.spans)), el("td", { class: "num" }, fmtMs(t.duration_ms)),
        el("td", { class: "num" }, fmtInt(t.errors)),
        el("td", { class: "num" }, `${fmtInt(t.prompt_tokens)} / ${fmtInt(t.completion_tokens)}`),
        el("td", { class: "num" }, fmtCost(t.cost_usd)))),
      { id: "session-table" })));
    document.body.dataset.loaded = String(Date.now());
  }

  // -- routing: every page is this script; the path says which ---------------------------------

  const path = location.pathname;
  const trace = path.match(/^\/traces\/([^/]+)$/);
  const session = path.match(/^\/sessions\/([^/]+)$/);
  // A malformed %-escape is shown as typed rather than failing the page.
  const decoded = (text) => { try { return decodeURIComponent(text); } catch { return text; } };
  if (trace) tracePage(decoded(trace[1]));
  else if (session) sessionPage(decoded(session[1]));
  else overview();
})();
