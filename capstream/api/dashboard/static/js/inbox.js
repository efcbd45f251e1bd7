// The demo inbox: emails the local SMTP catcher received for this account's notifications.
import { clock, h, replace } from "./dom.js";

export async function refreshInbox(app, el, note) {
  const box = await app.api.get(`/v1/accounts/${encodeURIComponent(app.account)}/mailbox?limit=50`);
  if (!box.enabled) {
    note.textContent = "No local mail catcher here: notifications go to your mail server.";
    replace(el);
    return;
  }
  if (!box.messages.length) {
    replace(el, h("p", { class: "empty", text: "No email yet." }));
    return;
  }
  replace(el, box.messages.map((m) => h("div", { class: "mail", "data-testid": "mail", "data-kind": m.kind || "" },
    h("div", { class: "subject", text: m.subject }),
    h("div", { class: "meta", text: `to ${m.rcpt_to.join(", ")} · ${clock(m.received_at_ms, app.tz, true)} · ${m.kind || ""}` }),
    h("pre", { text: m.body }))));
}
