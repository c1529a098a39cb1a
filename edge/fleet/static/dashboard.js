// edge dashboard: fetches /api/summary and draws it with Chart.js (vendored, no CDN).
// A null value is a gap: no window stored, or a count of 1..k-1 withheld by the minimum-cell rule.
// Withheld points are marked with a small grey cross on the zero line so they read differently
// from hours with no data at all. No inline code: the page is served with CSP default-src 'self'.
"use strict";

(function () {
  const REFRESH_MS = 60000;
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#db2777", "#ca8a04", "#475569"];
  const GENDER_COLOURS = { female: "#db2777", male: "#2563eb", unknown: "#cbd5e1" };
  const AGE_RAMP = ["#dbeafe", "#bfdbfe", "#93c5fd", "#60a5fa", "#3b82f6", "#2563eb", "#1d4ed8", "#1e3a8a", "#172554"];
  const WITHHELD = "#94a3b8";
  const charts = [];

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#4b5563";
  Chart.defaults.borderColor = "#e5e7eb";
  Chart.defaults.animation = false; // drawn at once: the page (and its test) can tell when it is done
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.plugins.legend.labels.boxHeight = 12;

  const el = (id) => document.getElementById(id);

  // Grey diagonal stripes: the withheld share, distinct from the plain grey "unknown" cell.
  function hatch() {
    const c = document.createElement("canvas");
    c.width = c.height = 8;
    const g = c.getContext("2d");
    g.fillStyle = "#f1f5f9";
    g.fillRect(0, 0, 8, 8);
    g.strokeStyle = "#94a3b8";
    g.lineWidth = 1.2;
    g.beginPath();
    g.moveTo(0, 8); g.lineTo(8, 0);
    g.moveTo(-2, 2); g.lineTo(2, -2);
    g.moveTo(6, 10); g.lineTo(10, 6);
    g.stroke();
    return g.createPattern(c, "repeat");
  }
  const WITHHELD_FILL = hatch();

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function dayLabel(isoDate) {
    const d = new Date(isoDate + "T00:00:00Z");
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
  }

  function hourLabel(iso) {
    const d = new Date(iso);
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCHours())}:00`;
  }

  function utc(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
  }

  function ago(iso, now) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((now - new Date(iso)) / 1000));
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  function colourOf(names) {
    const map = {};
    names.forEach((n, i) => { map[n] = PALETTE[i % PALETTE.length]; });
    return map;
  }

  // Markers at zero for withheld values (hidden from the legend, named in the tooltip).
  function withheldMarkers(series, colours, k, what = "") {
    return series.filter((s) => s.hidden.some(Boolean)).map((s) => ({
      type: "line",
      label: `${s.name}${what}: withheld (1–${k - 1})`,
      data: s.hidden.map((h) => (h ? 0 : null)),
      showLine: false,
      pointStyle: "crossRot",
      pointRadius: 4,
      pointBorderWidth: 1.5,
      borderColor: colours[s.name] || WITHHELD,
      backgroundColor: colours[s.name] || WITHHELD,
      withheld: true,
    }));
  }

  const legendWithoutMarkers = {
    position: "bottom",
    labels: { filter: (item, data) => !data.datasets[item.datasetIndex].withheld },
  };

  function withheldTooltip(ctx) {
    if (ctx.dataset.withheld) return ctx.dataset.label;
    return undefined;
  }

  // lastOpen: the last point is a period still filling (the current hour): its segment is dashed.
  function lineDataset(s, label, colour, labels, lastOpen) {
    const last = labels.length - 1;
    return {
      label,
      data: s.values,
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: 2,
      // Many points: no dots, except a value with no neighbour, which no line would draw.
      pointRadius: (ctx) => {
        if (labels.length <= 20) return 3;
        const v = ctx.dataset.data, i = ctx.dataIndex;
        return v[i] != null && v[i - 1] == null && v[i + 1] == null ? 3 : 0;
      },
      pointHoverRadius: 4,
      tension: 0.25,
      spanGaps: false,
      segment: { borderDash: (ctx) => (lastOpen && ctx.p1DataIndex === last ? [5, 4] : undefined) },
    };
  }

  function lineChart(canvas, labels, series, colours, k, unit, lastOpen) {
    const datasets = series.map((s) => lineDataset(s, s.name, colours[s.name], labels, lastOpen));
    return new Chart(canvas, {
      type: "line",
      data: { labels, datasets: datasets.concat(withheldMarkers(series, colours, k)) },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 16 }, grid: { display: false } },
          y: { beginAtZero: true, title: { display: Boolean(unit), text: unit } },
        },
        plugins: {
          legend: legendWithoutMarkers,
          tooltip: { callbacks: { label: withheldTooltip } },
        },
      },
    });
  }

  // Viewers per hour and site (solid, left axis) and their attention time in minutes (thin and
  // dotted, right axis), on the same hours as the visitors chart above it.
  function attentionChart(data, colours, k) {
    const labels = data.attention.hours.map(hourLabel);
    const viewers = data.attention.viewers.map((s) =>
      ({ ...lineDataset(s, `${s.name} viewers`, colours[s.name], labels, true), yAxisID: "y" }));
    const minutes = data.attention.minutes.map((s) => ({
      ...lineDataset(s, `${s.name} attention (min)`, colours[s.name], labels, true),
      yAxisID: "y1",
      borderWidth: 1.5,
      borderDash: [2, 3],
    }));
    el("attention-span").textContent = viewers.length
      ? "· last 48 hours, by site: viewers (left) and their attention time (right, dotted)"
      : "· no device measured attention in the last 48 hours";
    return new Chart(el("chart-attention"), {
      type: "line",
      data: { labels, datasets: viewers.concat(minutes, withheldMarkers(data.attention.viewers, colours, k, " viewers")) },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 16 }, grid: { display: false } },
          y: { beginAtZero: true, position: "left", title: { display: true, text: "viewers" } },
          y1: {
            beginAtZero: true,
            position: "right",
            grid: { drawOnChartArea: false },
            title: { display: true, text: "attention, minutes" },
          },
        },
        plugins: {
          legend: legendWithoutMarkers,
          tooltip: { callbacks: { label: withheldTooltip } },
        },
      },
    });
  }

  // People per hour and site (solid), those with a face (dashed) and crossings of the counting line
  // in and out (thin, dotted and dash-dotted; only sites whose devices have a line), on the hours of
  // the visitors chart.
  function peopleChart(data, colours, k) {
    const p = data.people;
    const labels = p.hours.map(hourLabel);
    const kinds = [
      [p.people, "people", {}],
      [p.with_face, "with a face", { borderDash: [6, 4] }],
      [p.crossings_in, "crossings in", { borderWidth: 1.5, borderDash: [2, 3] }],
      [p.crossings_out, "crossings out", { borderWidth: 1.5, borderDash: [8, 3, 2, 3] }],
    ];
    const lines = kinds.flatMap(([series, what, style]) =>
      series.map((s) => ({ ...lineDataset(s, `${s.name} ${what}`, colours[s.name], labels, true), ...style })));
    const markers = kinds.flatMap(([series, what]) => withheldMarkers(series, colours, k, ` ${what}`));
    el("people-span").textContent = p.people.length
      ? "· last 48 hours, by site: people (solid), with a face (dashed), crossings in (dotted) and out (dash-dot)"
      : "· no device counted people in the last 48 hours";
    return new Chart(el("chart-people"), {
      type: "line",
      data: { labels, datasets: lines.concat(markers) },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkipPadding: 16 }, grid: { display: false } },
          y: { beginAtZero: true, title: { display: true, text: "people" } },
        },
        plugins: {
          legend: legendWithoutMarkers,
          tooltip: { callbacks: { label: withheldTooltip } },
        },
      },
    });
  }

  function dailyChart(data, k) {
    const colours = colourOf(data.daily.series.map((s) => s.name));
    const datasets = data.daily.series.map((s) => ({
      label: s.site ? `${s.name} (${s.site})` : s.name,
      data: s.values,
      backgroundColor: colours[s.name],
      borderRadius: 3,
      maxBarThickness: 28,
    }));
    return new Chart(el("chart-daily"), {
      type: "bar",
      data: {
        labels: data.daily.days.map(dayLabel),
        datasets: datasets.concat(withheldMarkers(data.daily.series, colours, k)),
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0 } },
          y: { beginAtZero: true, title: { display: true, text: "visitors" } },
        },
        plugins: { legend: legendWithoutMarkers, tooltip: { callbacks: { label: withheldTooltip } } },
      },
    });
  }

  // 100 % stacked horizontal bars, one per site; the withheld share (n minus the published cells)
  // is its own grey segment, so the bars always add up to the visits they describe.
  function mixChart(canvas, mix, attribute, colourFor, k) {
    const rows = mix.filter((m) => m.attribute === attribute && m.n);
    const sites = rows.map((m) => m.site);
    const cells = [];
    rows.forEach((m) => Object.keys(m.cells).forEach((c) => { if (!cells.includes(c)) cells.push(c); }));
    const share = (m, v) => (v === null || v === undefined ? null : (100 * v) / m.n);
    const datasets = cells.map((c, i) => ({
      label: c,
      data: rows.map((m) => share(m, m.cells[c])),
      counts: rows.map((m) => m.cells[c]),
      backgroundColor: colourFor(c, i, cells.length),
      borderColor: "#ffffff",
      borderWidth: 1,
    }));
    const hidden = rows.map((m) => m.n - Object.values(m.cells).reduce((a, v) => a + (v || 0), 0));
    if (hidden.some((h) => h > 0)) {
      datasets.push({
        label: `withheld (cells of 1–${k - 1})`,
        data: rows.map((m, i) => share(m, hidden[i])),
        counts: hidden,
        backgroundColor: WITHHELD_FILL,
        borderColor: "#ffffff",
        borderWidth: 1,
      });
    }
    return new Chart(canvas, {
      type: "bar",
      data: { labels: sites.map((s, i) => `${s} (n=${rows[i].n})`), datasets },
      options: {
        indexAxis: "y",
        scales: {
          x: { stacked: true, min: 0, max: 100, ticks: { callback: (v) => `${v}%` } },
          y: { stacked: true, grid: { display: false } },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: {
            callbacks: {
              label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.x.toFixed(1)}% (${ctx.dataset.counts[ctx.dataIndex]})`,
            },
          },
        },
      },
    });
  }

  function spoolChart(devices) {
    const names = devices.map((d) => (d.spool_depth === null ? `${d.device} (no spool)` : d.device));
    return new Chart(el("chart-spool"), {
      type: "bar",
      data: {
        labels: names,
        datasets: [{
          label: "windows in spool",
          data: devices.map((d) => d.spool_depth),
          backgroundColor: devices.map((d) => (d.online ? "#0891b2" : "#f87171")),
          borderRadius: 3,
          maxBarThickness: 22,
        }],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: { beginAtZero: true, suggestedMax: 10, ticks: { precision: 0 } },
          y: { grid: { display: false } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (ctx) => (ctx.raw === null ? "no spool reported (not an MQTT sink or no health yet)"
                : `${ctx.raw} windows waiting`),
            },
          },
        },
      },
    });
  }

  function cell(tr, text, cls, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (title) td.title = title;
    tr.appendChild(td);
    return td;
  }

  function deviceTable(devices, now) {
    const body = el("devices").tBodies[0];
    body.replaceChildren();
    devices.forEach((d) => {
      const tr = document.createElement("tr");
      tr.dataset.device = d.device;
      const status = document.createElement("span");
      // Reported online but silent for longer than offline_after_s: offline, in amber.
      const stale = !d.online && d.status === "online";
      status.className = `pill ${d.online ? "online" : stale ? "stale" : "offline"}`;
      status.textContent = d.online ? "online" : "offline";
      status.title = stale ? `reports online, silent since ${utc(d.last_seen)}` : `status ${d.status || "unknown"}`;
      cell(tr, "").appendChild(status);
      cell(tr, d.device);
      cell(tr, d.site || "—");
      cell(tr, ago(d.last_seen, now), "", utc(d.last_seen));
      cell(tr, d.last_window_end ? ago(d.last_window_end, now) : "—", "", utc(d.last_window_end));
      cell(tr, d.spool_depth === null ? "—" : String(d.spool_depth), "num");
      cell(tr, d.fps === null ? "—" : d.fps.toFixed(1), "num");
      cell(tr, d.version || "—");
      body.appendChild(tr);
    });
    if (!devices.length) {
      const tr = document.createElement("tr");
      cell(tr, "No device has reported yet.", "muted").colSpan = 8;
      body.appendChild(tr);
    }
  }

  function draw(data) {
    const k = data.min_cell;
    const now = new Date(data.generated_at);
    el("meta").textContent = `Last ${data.days} days · updated ${utc(data.generated_at)}`;
    el("privacy").textContent =
      `Anonymised counts only. Counts of 1 to ${k - 1} people (below the minimum cell k = ${k}) are ` +
      "withheld: they show as gaps, marked × on the zero line, or as a grey “withheld” share.";
    el("daily-span").textContent = `· last ${data.days} days, by device`;

    charts.splice(0).forEach((c) => c.destroy());
    const siteNames = [...new Set(data.hourly.series.map((s) => s.name)
      .concat(data.dwell.series.map((s) => s.name), data.attention.viewers.map((s) => s.name),
        data.people.people.map((s) => s.name)))].sort();
    const siteColours = colourOf(siteNames);
    charts.push(lineChart(el("chart-hourly"), data.hourly.hours.map(hourLabel), data.hourly.series,
      siteColours, k, "visitors", true));
    charts.push(attentionChart(data, siteColours, k));
    charts.push(peopleChart(data, siteColours, k));
    charts.push(dailyChart(data, k));
    charts.push(lineChart(el("chart-dwell"), data.dwell.days.map(dayLabel), data.dwell.series, siteColours, k,
      "seconds", false));
    charts.push(mixChart(el("chart-gender"), data.mix, "gender",
      (c, i) => GENDER_COLOURS[c] || PALETTE[(i + 3) % PALETTE.length], k));
    charts.push(mixChart(el("chart-age"), data.mix, "age",
      (c, i, n) => (c === "unknown" ? "#cbd5e1" : AGE_RAMP[Math.min(AGE_RAMP.length - 1, i + 1)]), k));
    charts.push(spoolChart(data.devices));
    deviceTable(data.devices, now);
  }

  function fail(message) {
    const box = el("error");
    box.textContent = `Could not load the dashboard data: ${message}`;
    box.hidden = false;
    document.body.dataset.ready = "error";
  }

  async function load() {
    const days = new URLSearchParams(window.location.search).get("days");
    const url = "api/summary" + (days ? `?days=${encodeURIComponent(days)}` : "");
    let response;
    try {
      response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    } catch (err) {
      fail(`${err.message} (is the dashboard still running?)`);
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok || body === null) {
      fail(`HTTP ${response.status}${body && body.error ? ": " + body.error : ""}`);
      return;
    }
    try {
      draw(body);
    } catch (err) {
      fail(`drawing failed: ${err.message}`);
      return;
    }
    el("error").hidden = true;
    document.body.dataset.ready = "1";
  }

  load();
  window.setInterval(load, REFRESH_MS);
})();
