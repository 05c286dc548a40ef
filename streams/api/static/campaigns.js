// The campaign list: id, sent, delivery rate and last update, polled.
import { AuthError, api, askForToken, cell, count, el, percent, showError, timeCell } from "./common.js";

const REFRESH_MS = 5000;
let timer = null;

async function load() {
  clearTimeout(timer);
  try {
    const body = await api("/api/v1/campaigns");
    showError("");
    document.getElementById("content").hidden = false;
    const rows = body.campaigns.map((c) => el("tr", { "data-campaign-id": c.campaign_id },
      el("th", { scope: "row" },
         el("a", { href: `/campaigns/${encodeURIComponent(c.campaign_id)}`, text: c.campaign_id })),
      cell("sent", c.sent, count(c.sent)),
      cell("delivery_rate", c.delivery_rate, percent(c.delivery_rate)),
      timeCell("as_of", c.as_of)));
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: 4,
        text: "No campaign has metrics yet: publish events and start a worker." })));
    }
    document.querySelector("#campaigns tbody").replaceChildren(...rows);
  } catch (error) {
    if (error instanceof AuthError) {
      document.getElementById("content").hidden = true;
      askForToken(load);
      return;
    }
    showError(`Could not load the campaigns: ${error.message}`);
  }
  timer = setTimeout(load, REFRESH_MS);
}

load();
