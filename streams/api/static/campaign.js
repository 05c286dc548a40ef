// The campaign detail page: summary cards, A/B section, charts, message log, replies,
// link clicks and export, kept current by the API's server-sent events.
import {
  ApiError, AuthError, api, askForToken, cell, count, el, percent, raw,
  request, showError, signedPercent, time, timeCell,
} from "./common.js";
import { barChart, lineChart } from "./charts.js";

const campaignId = decodeURIComponent(location.pathname.replace(/^\/campaigns\//, "").replace(/\/+$/, ""));
const base = `/api/v1/campaigns/${encodeURIComponent(campaignId)}`;
const $ = (id) => document.getElementById(id);

const CARDS = [
  ["sent", "Sent", count, "accepted by the gateway"],
  ["delivered", "Delivered", count, "carrier receipt"],
  ["delivery_rate", "Delivery rate", percent, "delivered / sent"],
  ["replies", "Replies", count, "inbound messages"],
  ["reply_rate", "Reply rate", percent, "replies / sent"],
  ["link_clicks", "Link clicks", count, "every click"],
  ["unique_link_clicks", "Unique link clicks", count, "contacts who clicked"],
  ["link_click_rate", "Link click rate", percent, "unique clicks / sent"],
  ["human_link_clicks", "Human clicks", count, "not previews or bots"],
  ["unique_human_link_clicks", "Unique human clicks", count, "people who clicked"],
  ["human_link_click_rate", "Human click rate", percent, "unique human clicks / sent"],
  ["failed", "Failed", count, "undelivered or rejected"],
  ["pending", "Pending", count, "no final receipt yet"],
  ["unknown", "Unknown", count, "no final receipt in time"],
  ["opt_outs", "Opt-outs", count, "STOP replies"],
  ["unique_repliers", "Unique repliers", count, "contacts who replied"],
  ["retries", "Retries", count, "retry messages (retry_of)"],
  ["recovered_by_retry", "Recovered by retry", count, "retries delivered"],
  // cost figures: shown only when the worker has prices (CA_PRICES_FILE)
  ["cost", "Cost", (v) => money(v), "segments x price", true],
  ["cost_per_delivered", "Cost per delivered", (v) => money(v), "cost / delivered", true],
  ["cost_per_unique_human_click", "Cost per human click", (v) => money(v),
   "cost / unique human clicks", true],
];
const VARIANT_COUNTS = [
  ["sent", "Sent"], ["delivered", "Delivered"], ["failed", "Failed"], ["pending", "Pending"],
  ["replies", "Replies"], ["unique_repliers", "Repliers"], ["opt_outs", "Opt-outs"],
  ["link_clicks", "Clicks"], ["unique_link_clicks", "Unique clicks"],
  ["human_link_clicks", "Human clicks"], ["unique_human_link_clicks", "Unique human clicks"],
];
const AB_METRICS = {
  delivery_rate: "delivery rate", unique_reply_rate: "reply rate", click_rate: "click rate (raw)",
  human_click_rate: "click rate (human)", opt_out_rate: "opt-out rate", failure_rate: "failure rate",
};
const SERIES = ["sent", "delivered", "failed", "replies", "link_clicks"];
const SERIES_LABELS = { sent: "Sends", delivered: "Deliveries", failed: "Failures",
                        replies: "Replies", link_clicks: "Clicks" };
const DURATION_BUCKETS = [
  ["le_1s", "≤ 1 s"], ["le_5s", "≤ 5 s"], ["le_10s", "≤ 10 s"], ["le_30s", "≤ 30 s"],
  ["le_60s", "≤ 1 min"], ["le_300s", "≤ 5 min"], ["le_900s", "≤ 15 min"], ["le_3600s", "≤ 1 h"],
  ["le_21600s", "≤ 6 h"], ["le_86400s", "≤ 24 h"], ["gt_86400s", "> 24 h"],
];
const PAGE_SIZE = 25;

let summary = null;
let windowSize = 60;

// --- summary, cards, charts ---------------------------------------------------------

// The summary's currency formatter (null: no prices; every cost figure is then hidden).
let moneyFormat = null;
function money(value) {
  if (value === null || value === undefined || !moneyFormat) return "–";
  return (Math.abs(value) >= 1 ? moneyFormat.large : moneyFormat.small).format(value);
}

function setCurrency(currency) {
  if (!currency) { moneyFormat = null; return; }
  if (moneyFormat && moneyFormat.currency === currency) return;
  // a total to the cent, a figure per message or click to a hundredth of a cent
  moneyFormat = { currency, large: new Intl.NumberFormat("en-US", { style: "currency", currency }),
                  small: new Intl.NumberFormat("en-US", { style: "currency", currency,
                                                          maximumFractionDigits: 4 }) };
}

function renderCards(container, body, keys) {
  container.replaceChildren(...CARDS.filter(([key, , , , priced]) => keys.includes(key)
                                            && (!priced || body.currency)).map(
    ([key, label, format, hint]) => el("div", { class: "card", "data-card": key, "data-value": raw(body[key]) },
      el("span", { class: "card-label", text: label }),
      el("span", { class: "card-value", text: format(body[key]) }),
      el("span", { class: "card-hint", text: hint }))));
}

function durationEntries(histogram) {
  const present = DURATION_BUCKETS.map(([key]) => histogram[key] || 0);
  const first = present.findIndex((n) => n > 0);
  if (first < 0) return [];
  const last = present.length - 1 - [...present].reverse().findIndex((n) => n > 0);
  return DURATION_BUCKETS.slice(first, last + 1).map(([key, label], i) => (
    { key, label, value: present[first + i] }));
}

function rankedEntries(counts) {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([key, value]) => ({ key, label: key, value }));
}

function renderSummary(body) {
  summary = body;
  setCurrency(body.currency);
  $("as-of").dataset.value = body.as_of;
  $("as-of").dateTime = body.as_of;
  $("as-of").textContent = time(body.as_of);
  renderCards($("cards"), body, CARDS.map(([key]) => key));
  renderCards($("clicks-summary"), body, ["link_clicks", "unique_link_clicks", "link_click_rate"]);
  barChart($("chart-time-to-deliver"), durationEntries(body.time_to_deliver),
           { empty: "no deliveries yet", format: count });
  barChart($("chart-time-to-first-click"), durationEntries(body.time_to_first_click),
           { empty: "no clicks yet", format: count });
  barChart($("chart-by-error-code"), rankedEntries(body.by_error_code),
           { empty: "no failures with an error code", format: count });
  barChart($("chart-by-carrier"), rankedEntries(body.by_carrier),
           { empty: "no carrier receipts yet", format: count });
  renderVariantCounts(body.variants);
  renderWhere(body);
}

// --- per variant, countries, failure categories, carriers (sortable tables) --------

const regionNames = typeof Intl.DisplayNames === "function"
  ? new Intl.DisplayNames(["en"], { type: "region" }) : null;
function countryName(code) {
  if (code === "ZZ") return "Unknown country";
  try { return regionNames ? regionNames.of(code) : code; } catch { return code; }
}
const CATEGORY_LABELS = {
  invalid_number: "Invalid number", not_mobile: "Not a mobile (landline)",
  blocked: "Blocked or filtered", opted_out: "Opted out", temporary: "Temporary",
  unclassified: "Unclassified",
};
const ratio = (a, b) => (b ? a / b : null);

// A table of rows (objects) whose header buttons sort it: a click sorts by that
// column, descending for figures and ascending for names, a second click reverses.
// Ties keep the rows' key order, so a sort is the same on every render.
class SortableTable {
  constructor(id, columns, initial) {
    this.id = id;
    this.columns = columns;  // [key, label, format, kind ("text"|"number"), priced?]
    this.sortKey = initial[0];
    this.descending = initial[1];
    this.rows = [];
    this.priced = false;
  }

  visible() { return this.columns.filter((c) => !c[4] || this.priced); }

  header() {
    const cells = this.visible().map(([key, label, , kind]) => {
      const sorted = key === this.sortKey;
      return el("th", { scope: "col", "data-sort-key": key,
                        "aria-sort": sorted ? (this.descending ? "descending" : "ascending") : "none" },
        el("button", { type: "button", class: "sort", "data-sort": key,
                       onclick: () => this.sortBy(key, kind) },
           label, el("span", { class: "sort-mark", "aria-hidden": "true",
                               text: sorted ? (this.descending ? " ▼" : " ▲") : "" })));
    });
    $(this.id).tHead.replaceChildren(el("tr", {}, ...cells));
  }

  sortBy(key, kind) {
    if (key === this.sortKey) this.descending = !this.descending;
    else { this.sortKey = key; this.descending = kind === "number"; }
    this.render(this.rows, this.priced);
  }

  render(rows, priced = false) {
    this.rows = rows;
    this.priced = priced;
    const key = this.sortKey;
    const sign = this.descending ? -1 : 1;
    const sorted = [...rows].sort((a, b) => {
      const x = a[key], y = b[key];
      if (x === y) return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
      if (x === null || x === undefined) return 1;  // no figure: last either way
      if (y === null || y === undefined) return -1;
      return sign * (typeof x === "number" ? x - y : String(x).localeCompare(String(y)));
    });
    this.header();
    const columns = this.visible();
    $(this.id).tBodies[0].replaceChildren(...sorted.map((row) => el("tr", { "data-key": row.key },
      ...columns.map(([field, , format]) => cell(field, row[field], format(row[field]))))));
    if (!sorted.length) {
      $(this.id).tBodies[0].append(el("tr", { class: "empty" },
        el("td", { colspan: columns.length, text: "Nothing here yet." })));
    }
  }
}

const textOf = (v) => (v === null || v === undefined ? "–" : String(v));
const PER_VARIANT = new SortableTable("per-variant", [
  ["variant", "Variant", textOf, "text"],
  ["sent", "Sent", count, "number"], ["delivered", "Delivered", count, "number"],
  ["pending", "Pending", count, "number"], ["unknown", "Unknown", count, "number"],
  ["link_clicks", "Raw clicks", count, "number"],
  ["human_link_clicks", "Human clicks", count, "number"],
  ["link_click_rate", "Raw click rate", percent, "number"],
  ["human_link_click_rate", "Human click rate", percent, "number"],
  ["cost", "Cost", money, "number", true],
  ["cost_per_delivered", "Cost/delivered", money, "number", true],
  ["cost_per_unique_human_click", "Cost/human click", money, "number", true],
], ["variant", false]);
const OUTCOME_COLUMNS = [
  ["sent", "Sent", count, "number"], ["delivered", "Delivered", count, "number"],
  ["failed", "Failed", count, "number"], ["delivery_rate", "Delivery rate", percent, "number"],
];
const BY_COUNTRY = new SortableTable("by-country", [
  ["country", "Country", textOf, "text"], ["code", "Code", textOf, "text"], ...OUTCOME_COLUMNS,
], ["sent", true]);
const BY_CATEGORY = new SortableTable("by-failure-category", [
  ["category", "Category", textOf, "text"], ["failed", "Failed", count, "number"],
  ["share", "Share of failed", percent, "number"],
], ["failed", true]);
const BY_CARRIER = new SortableTable("by-carrier-outcome", [
  ["carrier", "Carrier", textOf, "text"], ...OUTCOME_COLUMNS,
], ["sent", true]);

function outcomeRows(breakdown, name) {
  return Object.entries(breakdown || {}).map(([key, c]) => ({
    key, [name]: key, sent: c.sent, delivered: c.delivered, failed: c.failed,
    delivery_rate: ratio(c.delivered, c.sent),
  }));
}

function renderWhere(body) {
  const variants = body.variants || {};
  const select = $("where-variant");
  const names = Object.keys(variants).sort();
  const offered = [...select.options].slice(1).map((o) => o.value);
  if (offered.join("\u0000") !== names.join("\u0000")) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "the whole campaign" }),
      ...names.map((n) => el("option", { value: n, text: `variant ${n}` })));
    select.value = names.includes(chosen) ? chosen : "";
  }
  const priced = Boolean(body.currency);
  PER_VARIANT.render(names.map((name) => ({ key: name, variant: name, ...pick(variants[name]) })), priced);
  const bag = select.value && variants[select.value] ? variants[select.value] : body;
  BY_COUNTRY.render(outcomeRows(bag.by_country, "code").map(
    (row) => ({ ...row, country: countryName(row.code) })));
  const categories = bag.by_failure_category || {};
  const totalFailed = Object.values(categories).reduce((n, v) => n + v, 0);
  BY_CATEGORY.render(Object.entries(categories).map(([key, n]) => ({
    key, category: CATEGORY_LABELS[key] || key, failed: n, share: ratio(n, totalFailed) })));
  BY_CARRIER.render(outcomeRows(bag.by_carrier_outcome, "carrier"));
  renderCountryOptions(body.by_country);
}

function pick(bag) {
  const out = {};
  for (const [key] of PER_VARIANT.columns) if (key !== "variant") out[key] = bag[key] ?? null;
  return out;
}

function renderCountryOptions(byCountry) {
  const select = $("country-filter");
  const codes = Object.keys(byCountry || {}).sort();
  const offered = [...select.options].slice(1).map((o) => o.value);
  if (offered.join(",") === codes.join(",")) return;
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "All" }),
    ...codes.map((c) => el("option", { value: c, text: `${countryName(c)} (${c})` })));
  select.value = chosen;  // kept while the campaign has it
}

// --- A/B ----------------------------------------------------------------------------

let abResult = null;

// Figures down, variants across: a column pair per variant (a count spans both; a
// rate has its interval and, beside it, its lift against the control).
function variantTable(names) {
  const head = el("tr", {}, el("th", { scope: "col", text: "" }),
    ...names.map((name) => el("th", { scope: "colgroup", colspan: 2, "data-variant": name, text: name })));
  const sub = el("tr", { class: "sub" }, el("th", { scope: "col", text: "" }),
    ...names.flatMap(() => [el("th", { scope: "col", text: "" }),
                            el("th", { scope: "col", class: "lift-head", text: "lift" })]));
  const counts = VARIANT_COUNTS.map(([key, label]) => el("tr", {}, el("th", { scope: "row", text: label }),
    ...names.map((name) => el("td", { colspan: 2, "data-variant": name, "data-field": key }))));
  const rates = Object.entries(AB_METRICS).map(([metric, label], i) => el("tr", { class: i ? "rate" : "rate first" },
    el("th", { scope: "row", text: label[0].toUpperCase() + label.slice(1) }),
    ...names.flatMap((name) => [el("td", { "data-variant": name, "data-metric": metric }),
                                el("td", { "data-variant": name, "data-lift": metric, class: "lift" })])));
  $("variants").tHead.replaceChildren(head, sub);
  $("variants").tBodies[0].replaceChildren(...counts, ...rates);
  $("variants").dataset.variants = names.join("\u0000");
  $("ab").hidden = names.length === 0;
}

const cellOf = (name, kind, key) =>
  $("variants").querySelector(`td[data-variant="${CSS.escape(name)}"][data-${kind}="${key}"]`);

function renderVariantCounts(variants) {
  const names = Object.keys(variants || {}).sort();
  if ($("variants").dataset.variants !== names.join("\u0000")) variantTable(names);
  for (const name of names) {
    // the counts the rates below are of: first attempts (retries are in the cards)
    const counts = variants[name].first_attempts || variants[name];
    for (const [key] of VARIANT_COUNTS) {
      const td = cellOf(name, "field", key);
      const n = counts[key] ?? variants[name][key];  // a snapshot from before a count existed
      td.dataset.value = raw(n);
      td.textContent = count(n);
    }
  }
  if (abResult) renderAbFigures(abResult);
}

function renderAbFigures(result) {
  const lifts = {};
  for (const comparison of result.comparisons) lifts[comparison.variant] = comparison.metrics;
  for (const variant of result.variants) {
    for (const metric of Object.keys(AB_METRICS)) {
      const td = cellOf(variant.variant, "metric", metric);
      const liftCell = cellOf(variant.variant, "lift", metric);
      if (!td || !liftCell) continue;  // a variant the summary has not shown yet
      const figure = variant.metrics[metric];
      if (!figure) continue;  // an API from before the metric existed
      td.dataset.value = raw(figure.rate);
      td.dataset.low = raw(figure.interval && figure.interval.low);
      td.dataset.high = raw(figure.interval && figure.interval.high);
      td.replaceChildren(el("span", { text: percent(figure.rate) }),
        figure.interval ? el("span", { class: "interval",
          text: `${percent(figure.interval.low)} – ${percent(figure.interval.high)}` }) : "");
      td.title = `${figure.successes} of ${figure.trials}`;
      const lift = lifts[variant.variant] ? lifts[variant.variant][metric] : null;
      liftCell.dataset.value = raw(lift && lift.lift);
      liftCell.textContent = variant.variant === result.control ? "control"
        : lift && lift.lift !== null ? signedPercent(lift.lift) : "–";
      liftCell.classList.toggle("significant", Boolean(
        lift && lift.always_valid_p_value !== null && lift.always_valid_p_value < result.config.alpha));
    }
  }
}

function pValue(p) {
  if (p === null || p === undefined) return "–";
  return p < 0.001 ? "< 0.001" : p.toFixed(3);
}

function verdictWords(result) {
  const verdict = result.verdict;
  const metric = AB_METRICS[verdict.metric] || verdict.metric;
  const rateOf = (name) => {
    const v = result.variants.find((x) => x.variant === name);
    return v ? v.metrics[verdict.metric].rate : null;
  };
  if (verdict.status === "winner") {
    const others = result.variants.filter((v) => v.variant !== verdict.variant)
      .map((v) => `${v.variant} ${percent(v.metrics[verdict.metric].rate)}`).join(", ");
    return `${verdict.variant} wins on ${metric}: ${percent(rateOf(verdict.variant))} against ` +
      `${others} (always-valid p = ${pValue(verdict.always_valid_p_value)}).`;
  }
  const ranked = result.variants.filter((v) => v.metrics[verdict.metric].rate !== null);
  if (ranked.length < 2) return `No verdict on ${metric} yet.`;
  const higher = !["opt_out_rate", "failure_rate"].includes(verdict.metric);
  ranked.sort((a, b) => (higher ? -1 : 1) * (a.metrics[verdict.metric].rate - b.metrics[verdict.metric].rate));
  const leader = ranked[0];
  return `${leader.variant} leads on ${metric} (${percent(leader.metrics[verdict.metric].rate)} against ` +
    `${ranked.slice(1).map((v) => `${v.variant} ${percent(v.metrics[verdict.metric].rate)}`).join(", ")}), ` +
    "not yet significant" + (verdict.projected_sends_per_arm
      ? `: about ${count(verdict.projected_sends_per_arm)} more sends per arm if the rates hold.`
      : ": keep sending before choosing a winner.");
}

function renderAb(result) {
  abResult = result;
  renderAbFigures(result);
  renderWinnerForm(result);
  $("verdict").dataset.status = result.verdict.status;
  $("verdict").textContent = verdictWords(result);
  $("verdict-reasons").replaceChildren(...(result.verdict.reasons || []).map(
    (reason) => el("li", { text: reason })));
  const srm = result.sample_ratio;
  $("srm-warning").hidden = !srm.flagged;
  if (srm.flagged) {
    const sent = result.variants.map((v) => `${v.variant} ${count(v.counts.sent)}`).join(", ");
    $("srm-warning").textContent = `Sample-ratio mismatch: the sends per variant (${sent}) are ` +
      `further from the planned split than chance explains (p = ${pValue(srm.p_value)}). ` +
      "Check how the audience was split before trusting the comparison.";
  }
  const control = result.control ? `Control: ${result.control}. ` : "";
  $("ab-notes").textContent = `${control}Rates with their ${Math.round(result.config.level * 100)} % ` +
    "intervals; lift is relative to the control; a bold lift is significant on the always-valid test. " +
    "Counts and rates are of first attempts: retries count in the cards above, not in the test." +
    (result.notes.length ? ` ${result.notes.join(" ")}` : "");
}

// --- time series --------------------------------------------------------------------

const minuteLabel = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

async function loadTimeseries() {
  const body = await api(`${base}/timeseries?window=${windowSize}`);
  lineChart($("chart-timeseries"), body.points, SERIES,
            { format: count, timeLabel: (iso) => minuteLabel.format(new Date(iso)) });
  const totals = Object.fromEntries(SERIES.map((s) => [s, body.points.reduce((n, p) => n + p[s], 0)]));
  $("timeseries-legend").replaceChildren(...SERIES.map((s) => el("li", { "data-series": s },
    el("span", { class: `swatch series-${s}`, "aria-hidden": "true" }),
    `${SERIES_LABELS[s]} ${count(totals[s])}`)));
}

function setupWindowToggle() {
  for (const button of document.querySelectorAll("button[data-window]")) {
    button.addEventListener("click", () => {
      windowSize = Number(button.dataset.window);
      for (const other of document.querySelectorAll("button[data-window]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      loadTimeseries().catch(failed);
    });
  }
}

// --- paged tables -------------------------------------------------------------------

// A table over an API list with cursors: the cursors of the pages seen so far make
// "Previous" exact, and a refresh re-reads the page on screen.
class PagedTable {
  constructor(name, path, row) {
    this.name = name;
    this.path = path;
    this.row = row;
    this.cursors = [null];
    this.next = null;
    this.query = {};
    this.loaded = false;
    const label = $(name).closest("[role=region]").getAttribute("aria-label");
    $(name).closest(".scroll").after(el("nav", { class: "pager", "aria-label": `${label} pages` },
      el("button", { type: "button", class: "button small", id: `${name}-prev`, text: "Previous",
                     onclick: () => this.move(-1) }),
      el("span", { id: `${name}-page`, class: "page-no" }),
      el("button", { type: "button", class: "button small", id: `${name}-next`, text: "Next",
                     onclick: () => this.move(1) })));
  }

  url() {
    const params = new URLSearchParams({ ...this.query, limit: PAGE_SIZE });
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    return `${base}${this.path}?${params}`;
  }

  async load() {
    const page = await api(this.url());
    this.next = page.next_cursor;
    this.loaded = true;
    const table = $(this.name);
    table.tBodies[0].replaceChildren(...page.items.map((item) => this.row(item)));
    if (!page.items.length) {
      table.tBodies[0].append(el("tr", { class: "empty" },
        el("td", { colspan: table.tHead.rows[0].cells.length, text: "Nothing here yet." })));
    }
    $(`${this.name}-prev`).disabled = this.cursors.length === 1;
    $(`${this.name}-next`).disabled = this.next === null;
    $(`${this.name}-page`).textContent = `Page ${this.cursors.length}`;
  }

  async move(step) {
    if (step > 0 && this.next !== null) this.cursors.push(this.next);
    if (step < 0 && this.cursors.length > 1) this.cursors.pop();
    await this.load().catch(failed);
  }

  async reset(query) {
    this.query = query;
    this.cursors = [null];
    await this.load().catch(failed);
  }
}

const messages = new PagedTable("messages", "/messages", (m) => el("tr", { "data-message-id": m.message_id },
  cell("contact_name", m.contact_name, m.contact_name || "–"),
  cell("phone", m.phone, m.phone),
  cell("variant", m.variant, m.variant || "–"),
  el("td", { "data-field": "status", "data-value": m.status },
     el("span", { class: `status status-${m.status}`, text: m.status }),
     m.retry_of ? el("span", { class: "retry-of", "data-retry-of": m.retry_of,
                               text: ` retry of ${m.retry_of}` }) : null),
  timeCell("sent_at", m.sent_at),
  timeCell("delivered_at", m.delivered_at),
  cell("error_code", m.error_code, m.error_code || "–"),
  cell("error_description", m.error_description, m.error_description || "–"),
  cell("country", m.country, m.country ? `${countryName(m.country)} (${m.country})` : "–"),
  cell("failure_category", m.failure_category,
       m.failure_category ? CATEGORY_LABELS[m.failure_category] || m.failure_category : "–"),
  cell("human_clicks", m.human_clicks, `${count(m.clicks)} (${count(m.human_clicks)})`)));

// A link to the contact's conversation in the messaging app (CA_CONVERSATION_URL_TEMPLATE).
function conversationLink(item) {
  if (!item.conversation_url) return null;
  return el("a", { href: item.conversation_url, target: "_blank", rel: "noopener noreferrer",
                   class: "conversation",
                   "aria-label": `Open the conversation with ${item.contact_name || item.phone}`,
                   text: "Open conversation" });
}

const replies = new PagedTable("replies", "/replies", (r) => el("tr", { "data-event-id": r.event_id },
  cell("contact_name", r.contact_name, r.contact_name || r.phone),
  cell("body", r.body, r.body),
  timeCell("received_at", r.received_at),
  el("td", { "data-field": "conversation_url", "data-value": raw(r.conversation_url) },
     conversationLink(r) || "–")));

const clicks = new PagedTable("clicks", "/clicks", (c) => el("tr", { "data-contact-id": c.contact_id },
  cell("contact_name", c.contact_name, c.contact_name || "–"),
  cell("phone", c.phone, c.phone),
  cell("clicks", c.clicks, count(c.clicks)),
  timeCell("first_click_at", c.first_click_at),
  timeCell("last_click_at", c.last_click_at),
  el("td", {}, el("button", { type: "button", class: "button small open-contact",
    "aria-label": `Show the clicks of ${c.contact_name || c.phone}`, text: "Show clicks",
    onclick: () => openContact(c).catch(failed) }), conversationLink(c))));

async function openContact(contact) {
  const items = [];
  let cursor = null;
  do {  // every click of one contact: a handful, so all pages at once
    const params = new URLSearchParams({ contact_id: contact.contact_id, limit: 500 });
    if (cursor) params.set("cursor", cursor);
    const page = await api(`${base}/clicks?${params}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  $("contact-clicks-title").textContent =
    `Clicks of ${contact.contact_name || contact.contact_id} (${contact.phone})`;
  $("contact-clicks-table").tBodies[0].replaceChildren(...items.map((k) => el("tr", { "data-event-id": k.event_id },
    timeCell("clicked_at", k.clicked_at),
    cell("message_id", k.message_id, k.message_id),
    cell("link_id", k.link_id, k.link_id),
    cell("user_agent", k.user_agent, k.user_agent || "–"))));
  $("contact-clicks").hidden = false;
  $("contact-clicks-close").focus();
}

// --- tabs ---------------------------------------------------------------------------

const TABS = { messages, replies, clicks };
let activeTab = "messages";

function selectTab(name, focus = false) {
  activeTab = name;
  for (const key of Object.keys(TABS)) {
    const tab = $(`tab-${key}`);
    tab.setAttribute("aria-selected", String(key === name));
    tab.tabIndex = key === name ? 0 : -1;
    $(`panel-${key}`).hidden = key !== name;
  }
  if (focus) $(`tab-${name}`).focus();
  if (!TABS[name].loaded) TABS[name].load().catch(failed);
}

function setupTabs() {
  const names = Object.keys(TABS);
  for (const name of names) {
    const tab = $(`tab-${name}`);
    tab.addEventListener("click", () => selectTab(name));
    tab.addEventListener("keydown", (event) => {  // arrow keys move along the tab list
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      selectTab(names[(names.indexOf(name) + step + names.length) % names.length], true);
    });
  }
  const filter = () => {  // status, country and failure category together
    const query = {};
    for (const [id, name] of [["status-filter", "status"], ["country-filter", "country"],
                              ["category-filter", "failure_category"]]) {
      if ($(id).value) query[name] = $(id).value;
    }
    messages.reset(query);
  };
  $("category-filter").append(...Object.entries(CATEGORY_LABELS).map(
    ([value, text]) => el("option", { value, text })));
  for (const id of ["status-filter", "country-filter", "category-filter"]) {
    $(id).addEventListener("change", filter);
  }
  $("where-variant").addEventListener("change", () => { if (summary) renderWhere(summary); });
  $("contact-clicks-close").addEventListener("click", () => { $("contact-clicks").hidden = true; });
}

// --- export -------------------------------------------------------------------------

async function exportCsv() {
  const button = $("export");
  button.disabled = true;
  try {
    const response = await request(`${base}/export.csv`, { headers: { Accept: "text/csv" } });
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `${campaignId.replace(/[^A-Za-z0-9._-]/g, "_")}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } finally {
    button.disabled = false;
  }
}

// --- actions: retry failed messages, send the winner (commands on Kafka) ----------

// An idempotency key per confirmed action: a double click repeats the same request.
function requestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));  // not a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify(body) });
}

function problem(error) {
  if (error instanceof ApiError) return `${error.status}: ${error.message}`;
  return error.message;
}

const SKIP_LABELS = {};  // a reason's key as the API names it, made readable below
const words = (key) => SKIP_LABELS[key] || key.replace(/_/g, " ");

let retryAnswer = null;  // the dry run on screen
let retryId = null;  // the request id of the round the panel would write
let retryBusy = false;

function setRetryCount(n, source) {
  const button = $("retry-failed");
  button.dataset.value = raw(n);
  button.dataset.source = source;
  $("retry-count").textContent = count(n);
}

function renderRetryCounts(answer) {
  const rows = [["requested", "Requested", answer.requested],
                ["scheduled_later", "Held by quiet hours (sent later)", answer.scheduled_later],
                ["placed_by_default_zone", "Time zone by default", answer.placed_by_default_zone],
                ...Object.entries(answer.skipped || {}).sort().map(
                  ([reason, n]) => [`skipped_${reason}`, `Skipped: ${words(reason)}`, n])];
  $("retry-counts").replaceChildren(...rows.flatMap(([key, label, n]) => [
    el("dt", { text: label }),
    el("dd", { "data-count": key, "data-value": raw(n), text: count(n) })]));
}

function retryResult(text, state) {
  $("retry-result").textContent = text;
  $("retry-result").dataset.state = state;
}

async function dryRun() {
  const answer = await postJson(`${base}/retries`, { dry_run: true });
  setRetryCount(answer.requested, "dry_run");
  return answer;
}

// The button's N: the dry run's requested count when it answers, else the failed count.
const refreshRetryCount = throttled(async () => {
  if (retryBusy || !$("retry-panel").hidden) return;
  try {
    await dryRun();
  } catch (error) {
    if (error instanceof AuthError) throw error;
    if (summary) setRetryCount(summary.failed, "failed");
  }
}, 20_000);

async function openRetry() {
  const button = $("retry-failed");
  button.disabled = true;
  try {
    retryAnswer = await dryRun();
    retryId = requestId();
    renderRetryCounts(retryAnswer);
    retryResult(retryAnswer.requested ? "" : "Nothing to retry now.", "");
    $("retry-confirm").hidden = false;
    $("retry-confirm").disabled = retryAnswer.requested === 0;
    $("retry-panel").hidden = false;
    button.setAttribute("aria-expanded", "true");
    $("retry-reason").focus();
  } catch (error) {
    if (error instanceof AuthError) throw error;
    $("retry-panel").hidden = false;
    $("retry-counts").replaceChildren();
    $("retry-confirm").hidden = true;
    retryResult(`Could not compute the retries: ${problem(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function confirmRetry() {
  if (retryBusy) return;  // a second click while the first is on its way
  retryBusy = true;
  $("retry-confirm").disabled = true;
  try {
    const answer = await postJson(`${base}/retries`, {
      dry_run: false, reason: $("retry-reason").value.trim(), request_id: retryId });
    renderRetryCounts(answer);
    const later = answer.scheduled_later ? `, ${count(answer.scheduled_later)} of them after quiet hours` : "";
    retryResult(`Requested ${count(answer.requested)} retries${later}` +
                (answer.repeated ? " (this request had already been made)." : "."), "done");
    $("retry-panel").dataset.roundId = raw(answer.round_id);
    $("retry-confirm").hidden = true;
    retryBusy = false;
    refreshRetryCount();
  } catch (error) {
    retryBusy = false;
    if (error instanceof AuthError) throw error;
    retryResult(error instanceof ApiError && error.status === 409
      ? `Not requested: ${error.message}` : `Could not request the retries: ${problem(error)}`,
    "error");
    $("retry-confirm").disabled = false;
  }
}

function closeRetry() {
  $("retry-panel").hidden = true;
  $("retry-failed").setAttribute("aria-expanded", "false");
  $("retry-failed").focus();
  retryAnswer = null;
  refreshRetryCount();
}

function setupRetry() {
  $("retry-failed").addEventListener("click", () => openRetry().catch(failed));
  $("retry-confirm").addEventListener("click", () => confirmRetry().catch(failed));
  $("retry-cancel").addEventListener("click", closeRetry);
}

let decision = null;  // the recorded winner decision, once there is one
let winnerBusy = false;

function renderDecision(body) {
  decision = body;
  const p = $("winner-decision");
  p.dataset.variant = body.variant;
  p.dataset.forced = String(Boolean(body.forced));
  const when = body.decided_at ? ` on ${time(body.decided_at)}` : "";
  const reason = body.reason ? ` Reason: “${body.reason}”.` : "";
  p.textContent = `Decided${when}: send ${body.variant} to the rest of the audience` +
    (body.forced ? " (forced: the verdict had not declared it the winner)." : ".") + reason;
  p.hidden = false;
  $("winner-form").hidden = true;
}

// The form follows the verdict: its winner is sent as is (reason optional); any other
// choice, or no winner yet, is forced and needs a reason.
function renderWinnerForm(result) {
  if (decision) return;
  const select = $("winner-variant");
  const names = result.variants.map((v) => v.variant);
  const verdict = result.verdict;
  if (select.dataset.variants !== names.join("\u0000")) {
    const keep = select.value;
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    select.dataset.variants = names.join("\u0000");
    select.value = names.includes(keep) ? keep
      : verdict.status === "winner" ? verdict.variant : names[0] || "";
  }
  const force = !(verdict.status === "winner" && verdict.variant === select.value);
  const button = $("send-winner");
  button.dataset.force = String(force);
  button.textContent = force ? `Force sending ${select.value}` : `Send winner ${select.value}`;
  $("winner-reason-label").textContent = force ? "Reason (required to force)" : "Reason (optional)";
  $("winner-reason").required = force;
  $("winner-hint").textContent = verdict.status === "winner"
    ? `The verdict: ${verdict.variant} wins.` + (force ? " Sending another variant is forced and recorded as such." : "")
    : "No winner yet: sending a variant now is forced, and the reason is recorded with the statistics as they stand.";
  $("winner").hidden = names.length < 2;
}

async function sendWinner(event) {
  event.preventDefault();
  if (winnerBusy || decision) return;
  const force = $("send-winner").dataset.force === "true";
  const reason = $("winner-reason").value.trim();
  if (force && !reason) {
    $("winner-result").textContent = "A reason is required to force a decision.";
    $("winner-result").dataset.state = "error";
    $("winner-reason").focus();
    return;
  }
  winnerBusy = true;  // one decision per campaign: a second click would answer 409
  $("send-winner").disabled = true;
  try {
    const body = await postJson(`${base}/winner`, { variant: $("winner-variant").value, reason, force });
    $("winner-result").textContent = "";
    $("winner-result").dataset.state = "done";
    renderDecision(body);
  } catch (error) {
    if (error instanceof AuthError) throw error;
    $("winner-result").textContent = `Not recorded: ${problem(error)}`;
    $("winner-result").dataset.state = "error";
    // 409 decided: the campaign's decision is the earlier one, shown as such
    if (error instanceof ApiError && error.body && error.body.decision) renderDecision(error.body.decision);
  } finally {
    winnerBusy = false;
    $("send-winner").disabled = false;
  }
}

async function loadDecision() {
  try {
    renderDecision(await api(`${base}/winner`));
  } catch (error) {
    if (error instanceof AuthError) throw error;
    // 404 no_decision: none yet; any other failure: the form stays, and a second
    // decision would answer 409 with the first one
  }
}

function setupWinner() {
  $("winner-form").addEventListener("submit", (event) => sendWinner(event).catch(failed));
  $("winner-variant").addEventListener("change", () => { if (abResult) renderWinnerForm(abResult); });
  $("winner-reason").addEventListener("input", () => {  // a refusal's message goes once fixed
    if ($("winner-result").dataset.state === "error") {
      $("winner-result").textContent = "";
      $("winner-result").dataset.state = "";
    }
  });
}

// --- live updates -------------------------------------------------------------------

function setLive(state) {
  const badge = $("live-status");
  badge.dataset.state = state;
  badge.textContent = state;
}

// The stream is read with fetch, not EventSource: EventSource cannot send the
// Authorization header. Reconnects resume with Last-Event-ID.
async function follow(onSummary) {
  let lastId = null;
  let retry = 2000;
  for (;;) {
    const abort = new AbortController();
    let silence = null;
    const watchdog = () => {  // the server sends a comment at least every 10 s
      clearTimeout(silence);
      silence = setTimeout(() => abort.abort(), 30_000);
    };
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await request(`${base}/events`, { headers, signal: abort.signal, cache: "no-store" });
      setLive("live");
      watchdog();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watchdog();
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let data = "";
          let id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") data += (data ? "\n" : "") + text;
            else if (field === "id") id = text;
            else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
          }
          if (id !== null) lastId = id;
          if (data) onSummary(JSON.parse(data));
        }
      }
    } catch (error) {
      if (error instanceof AuthError) throw error;
      if (error instanceof ApiError && error.status === 404) throw error;
    } finally {
      clearTimeout(silence);
    }
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, retry));
  }
}

// Refreshes that follow a new snapshot, at most one at a time per kind.
function throttled(work, pause) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) { again = true; return; }
    running = true;
    try {
      do {
        again = false;
        await work().catch(failed);
        await new Promise((resolve) => setTimeout(resolve, pause));
      } while (again);
    } finally {
      running = false;
    }
  };
}

const refreshAb = throttled(async () => renderAb(await api(`${base}/ab`)), 500);
const refreshSeries = throttled(loadTimeseries, 3000);
const refreshTable = throttled(async () => {
  const table = TABS[activeTab];
  if (table.loaded) await table.load();
}, 3000);

// --- start --------------------------------------------------------------------------

function failed(error) {
  if (error instanceof AuthError) {
    $("content").hidden = true;
    askForToken(start);
    return;
  }
  showError(error instanceof ApiError && error.status === 404
    ? `No metrics for campaign “${campaignId}” (yet).` : `Could not load: ${error.message}`);
}

let started = false;

async function start() {
  try {
    const body = await api(base);
    showError("");
    $("content").hidden = false;
    renderSummary(body);
    setRetryCount(body.failed, "failed");
    await Promise.all([refreshAb(), loadTimeseries(), TABS[activeTab].load(), loadDecision()]);
    refreshRetryCount();
    if (!started) {
      started = true;
      follow((next) => {
        renderSummary(next);
        refreshAb();
        refreshSeries();
        refreshTable();
        refreshRetryCount();
      }).catch((error) => { started = false; setLive("reconnecting"); failed(error); });
    }
  } catch (error) {
    failed(error);
  }
}

$("campaign-title").textContent = campaignId;
document.title = `${campaignId} · campaign-analytics`;
$("export").addEventListener("click", () => exportCsv().catch(failed));
setupWindowToggle();
setupTabs();
setupRetry();
setupWinner();
start();
