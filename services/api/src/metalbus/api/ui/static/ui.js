// metalbus web UI: fills the server's page shells from /api/v1 and follows the live event
// stream. No framework and no build step: every element is made with h() (text is never
// parsed as HTML), every call goes through api() with the token from sessionStorage.
"use strict";

const API = "/api/v1";
const UI = "/ui";
const TOKEN_KEY = "metalbus.token";
const GiB = 1024 ** 3;

// -- small helpers ---------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector) => document.querySelector(selector);
const ui = (path) => `${UI}${path}`;
const label = (value) => String(value ?? "").replaceAll("_", " ");

function bytes(n) {
  if (n >= 1024 ** 4) return `${(n / 1024 ** 4).toFixed(1)} TiB`;
  if (n >= GiB) return `${(n / GiB).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(0)} MiB`;
  return `${n} B`;
}

const mib = (n) => (n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${n} MiB`);

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function notice(message, kind = "error") {
  const box = $("#notice");
  if (!box) return;
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

// A usage bar: a meter the screen reader reads as "used of total". ``extra.physical`` puts a
// marker where the physical capacity ends when an overcommit ratio stretches the total past
// it; ``extra.promised`` stacks a second segment (thin disks promised to VMs) after ``used``.
function bar(name, used, total, format, extra = {}) {
  const share = (n) => (total > 0 ? Math.max(0, Math.min(100, (n / total) * 100)) : 0);
  const promised = extra.promised || 0;
  const pct = share(used + promised);
  let text = `${format(used)} of ${format(total)} (${share(used).toFixed(0)}%)`;
  if (extra.promised !== undefined) {
    text = `${format(used)} used, ${format(promised)} promised to VMs, of ${format(total)} (${pct.toFixed(0)}%)`;
  }
  const fill = h("span", { class: "bar-fill" });
  fill.style.width = `${share(used)}%`;
  const meter = h(
    "div",
    {
      class: `bar${pct >= 90 ? " high" : ""}`,
      role: "meter",
      "aria-label": name,
      "aria-valuemin": 0,
      "aria-valuemax": total,
      "aria-valuenow": Math.min(used + promised, total),
      "aria-valuetext": text,
      "data-bar": extra.key || name,
      "data-used": used,
      "data-promised": extra.promised === undefined ? null : promised,
      "data-total": total,
    },
    fill,
  );
  if (promised) {
    const more = h("span", { class: "bar-fill promised" });
    more.style.width = `${Math.max(0, pct - share(used))}%`;
    meter.append(more);
  }
  if (extra.physical && extra.physical < total) {
    const mark = h("span", { class: "bar-mark", title: "physical capacity" });
    mark.style.left = `${(extra.physical / total) * 100}%`;
    meter.append(mark);
    if (used > extra.physical) meter.classList.add("over");
  }
  return h(
    "div",
    { class: "bar-row" },
    h("span", { class: "bar-name" }, name),
    meter,
    h("span", { class: "bar-text" }, text, extra.note ? h("span", { class: "muted" }, ` ${extra.note}`) : null),
  );
}

// -- the token and the API -------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem.detail || problem.title || `HTTP ${status}`;
    super(problem.field ? `${detail} (${problem.field})` : detail);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${API}${path}`, init);
  if (response.status === 401) {
    logout("The token was refused: log in again.");
    throw new ApiError(401, { detail: "not logged in" });
  }
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { detail: `HTTP ${response.status}` };
    }
    throw new ApiError(response.status, problem);
  }
  return response.status === 204 ? null : response.json();
}

// Every item of a paged list (``{items, next}``), following ``next``.
async function all(path) {
  const items = [];
  let after = 0;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=1000&after=${after}`);
    items.push(...page.items);
    if (page.next === null || page.next === undefined) return items;
    after = page.next;
  }
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  const next = encodeURIComponent(location.pathname + location.search);
  const why = message ? `&why=${encodeURIComponent(message)}` : "";
  location.assign(ui(`/login?next=${next}${why}`));
}

// -- the live event stream -------------------------------------------------------------
// EventSource cannot send a bearer token, so the stream is read with fetch and parsed
// here; on a cut it reconnects with Last-Event-ID and the server replays what was missed.

const live = { controller: new AbortController(), lastId: null, handlers: [] };

function onEvents(prefixes, handler) {
  live.handlers.push({ prefixes, handler });
}

function setLive(state, text) {
  const el = $("#live");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

function dispatch(frame) {
  let type = "";
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("id:")) live.lastId = line.slice(3).trim();
    else if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!type || !data) return;
  const event = JSON.parse(data);
  for (const { prefixes, handler } of live.handlers) {
    if (prefixes.some((p) => type.startsWith(p))) handler(event);
  }
}

async function follow() {
  let wait = 500;
  while (!live.controller.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (live.lastId) headers["Last-Event-ID"] = live.lastId;
      const response = await fetch(`${API}/events/stream`, { headers, signal: live.controller.signal });
      if (response.status === 401) return logout("The token was refused: log in again.");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      setLive("on", "Live");
      wait = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (live.controller.signal.aborted) return;
    }
    setLive("off", "Live: reconnecting");
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

// A page's refresh, run once for a burst of events and never twice at a time.
function refresher(load) {
  let running = null;
  let again = false;
  let timer = null;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        await load();
      } catch (error) {
        if (error.status !== 401) notice(error.message);
      }
    })();
    await running;
    running = null;
    if (again) {
      again = false;
      await run();
    }
  };
  run.soon = () => {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  };
  return run;
}

// Run an action from a button: disabled while it works, the API's problem shown if it fails.
async function act(button, work, where = null) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (where) where.hidden = true;
  try {
    await work();
    notice("");
  } catch (error) {
    if (error.status === 401) return;
    if (where) {
      where.textContent = error.message;
      where.hidden = false;
    } else notice(error.message);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(h("tr", {}, h("td", { colspan: columns, class: "muted" }, text)));
}

// -- pages -----------------------------------------------------------------------------

const pages = {};

pages.login = () => {
  const params = new URLSearchParams(location.search);
  if (params.get("why")) notice(params.get("why"));
  const form = $("#login-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = form.token.value.trim();
    const button = form.querySelector("button");
    await act(button, async () => {
      const response = await fetch(`${API}/whoami`, {
        headers: { Authorization: `Bearer ${value}`, Accept: "application/json" },
      });
      if (!response.ok) throw new Error("That token was not accepted.");
      sessionStorage.setItem(TOKEN_KEY, value);
      const next = params.get("next") || "";
      location.assign(next.startsWith(`${UI}/`) ? next : ui("/machines"));
    });
  });
  form.token.focus();
};

// Machines ------------------------------------------------------------------------------

async function powerByMachine() {
  // The power service knows each BMC's last state; the api's machine names its BMC.
  try {
    const bmcs = await all("/power/bmcs");
    return new Map(bmcs.filter((b) => b.machine_id).map((b) => [b.machine_id, b]));
  } catch (error) {
    if (error.status === 503 || error.status === 504) return new Map();
    throw error;
  }
}

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, label(status));
}

function powerBadge(state) {
  return h("span", { class: `badge power-${state || "unknown"}` }, state || "unknown");
}

pages.machines = () => {
  const tbody = $("#machines tbody");
  const search = $("#machine-search");
  const status = $("#machine-status");
  const params = new URLSearchParams(location.search);
  search.value = params.get("q") || "";
  status.value = params.get("status") || "";
  let machines = [];
  let power = new Map();

  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = machines.filter((m) => {
      if (status.value && m.status !== status.value) return false;
      if (!q) return true;
      const words = [m.hostname, m.fqdn, m.system_id, m.zone, m.pool, ...m.tags];
      words.push(...m.interfaces.map((i) => i.mac));
      return words.some((w) => String(w).toLowerCase().includes(q));
    });
    $("#machine-count").textContent = `${shown.length} of ${machines.length} machines`;
    if (!shown.length) return emptyRow(tbody, 9, machines.length ? "No machine matches." : "No machines yet.");
    tbody.replaceChildren(
      ...shown.map((m) =>
        h(
          "tr",
          { "data-system-id": m.system_id },
          h("th", { scope: "row" }, h("a", { href: ui(`/machines/${m.system_id}`) }, m.hostname)),
          h("td", {}, statusBadge(m.status)),
          h("td", {}, powerBadge(power.get(m.system_id)?.power_state)),
          h("td", { class: "num" }, m.cores),
          h("td", { class: "num" }, mib(m.memory)),
          h("td", { class: "num" }, bytes(m.storage)),
          h("td", {}, m.zone),
          h("td", {}, m.pool),
          h("td", {}, m.owner || ""),
        ),
      ),
    );
  };
  const load = refresher(async () => {
    [machines, power] = await Promise.all([api("GET", "/machines"), powerByMachine()]);
    render();
  });
  const remember = () => {
    const next = new URLSearchParams();
    if (search.value) next.set("q", search.value);
    if (status.value) next.set("status", status.value);
    history.replaceState(null, "", `${location.pathname}${next.size ? `?${next}` : ""}`);
    render();
  };
  search.addEventListener("input", remember);
  status.addEventListener("change", remember);
  $("#machine-filter").addEventListener("submit", (e) => e.preventDefault());
  onEvents(["io.metalbus.api.machine.", "io.metalbus.power."], load.soon);
  return load();
};

pages.machine = () => {
  const systemId = document.body.dataset.systemId;
  const legal = JSON.parse(document.body.dataset.legal);
  let machine = null;
  let bmc = null;

  const load = refresher(async () => {
    const [m, history, events] = await Promise.all([
      api("GET", `/machines/${systemId}`),
      api("GET", `/machines/${systemId}/history`),
      api("GET", `/events?subject=${encodeURIComponent(systemId)}&limit=50`),
    ]);
    machine = m;
    bmc = null;
    if (m.power.bmc_id) {
      try {
        bmc = await api("GET", `/power/bmcs/${m.power.bmc_id}`);
      } catch (error) {
        if (![404, 503, 504].includes(error.status)) throw error;
      }
    }
    render(history, events.items);
  });

  const render = (history, events) => {
    const m = machine;
    document.title = `${m.hostname} · metalbus`;
    $("#machine-title").textContent = m.fqdn;
    const facts = [
      ["System id", m.system_id],
      ["Status", statusBadge(m.status)],
      ["Power", powerBadge(bmc?.power_state)],
      ["Power driver", m.power.driver || "none"],
      ["Flow", m.flow ? `${m.flow}${m.flow_step ? ` (${m.flow_step})` : ""}` : "none"],
      ["Architecture", m.architecture],
      ["Cores", m.cores],
      ["Memory", mib(m.memory)],
      ["Storage", bytes(m.storage)],
      ["Zone", m.zone],
      ["Pool", m.pool],
      ["Owner", m.owner || "none"],
      ["Tags", m.tags.join(", ") || "none"],
    ];
    if (m.pod_id) facts.push(["KVM host", h("a", { href: ui(`/pods/${m.pod_id}`) }, `host ${m.pod_id}`)]);
    if (m.flow_error) facts.push(["Last error", m.flow_error]);
    $("#machine-summary").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    for (const button of document.querySelectorAll("[data-action]")) {
      button.hidden = !(legal[button.dataset.action] || []).includes(m.status);
    }
    for (const button of document.querySelectorAll("[data-power]")) button.disabled = !m.power.bmc_id;
    const tbody = $("#machine-interfaces tbody");
    if (!m.interfaces.length) emptyRow(tbody, 4, "No interfaces.");
    else
      tbody.replaceChildren(
        ...m.interfaces.map((i) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, i.name),
            h("td", { class: "mono" }, i.mac),
            h("td", {}, i.vlan_id ?? ""),
            h(
              "td",
              {},
              i.links.length
                ? h("ul", { class: "plain" }, i.links.map((l) => h("li", {}, `${l.mode}${l.ip ? ` ${l.ip}` : ""}${l.subnet_id ? ` (subnet ${l.subnet_id})` : ""}`)))
                : "not linked",
            ),
          ),
        ),
      );
    $("#machine-history").replaceChildren(
      ...history.map((s) => h("li", {}, h("time", { datetime: s.at }, when(s.at)), ` ${label(s.previous)} → ${label(s.status)} (${s.action}) ${s.message}`)),
    );
    $("#machine-events").replaceChildren(
      ...events.map((e) => h("li", {}, h("time", { datetime: e.time }, when(e.time)), " ", h("code", {}, e.type))),
    );
  };

  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () =>
      act(button, async () => {
        const action = button.dataset.action;
        if (action === "allocate") await api("POST", "/machines/allocate", { system_id: systemId, compose: false });
        else await api("POST", `/machines/${systemId}/${action.replaceAll("_", "-")}`);
        await load();
      }),
    );
  }
  for (const button of document.querySelectorAll("[data-power]")) {
    button.addEventListener("click", () =>
      act(button, async () => {
        await api("POST", `/power/bmcs/${machine.power.bmc_id}/${button.dataset.power}`);
        await load();
      }),
    );
  }
  onEvents(["io.metalbus.api.machine.", "io.metalbus.power."], (event) => {
    if (event.subject === systemId || event.data?.machine_id === systemId) load.soon();
  });
  return load();
};

// KVM hosts -----------------------------------------------------------------------------

// A host's bars. Storage: libvirt's "used" is what the pool's volumes take on disk now;
// compose makes thin volumes (they start empty), so the sizes of the VMs' disks in a pool
// are shown beside it as what is promised to VMs.
function hostBars(host, vms) {
  const u = host.usage;
  const cpuNote = host.cpu_over_commit_ratio !== 1 ? `${host.cores} cores × ${host.cpu_over_commit_ratio} overcommit` : "";
  const memNote = host.memory_over_commit_ratio !== 1 ? `${mib(host.memory)} × ${host.memory_over_commit_ratio} overcommit` : "";
  const promised = new Map();
  for (const vm of vms) {
    for (const disk of vm.disks) promised.set(disk.pool, (promised.get(disk.pool) || 0) + disk.size);
  }
  return [
    bar("Cores", u.cores_used, u.cores_total, (n) => `${n}`, { key: "cores", physical: host.cores, note: cpuNote }),
    bar("Memory", u.memory_used, u.memory_total, mib, { key: "memory", physical: host.memory, note: memNote }),
    ...host.storage_pools.map((p) =>
      bar(`Storage: ${p.name}`, p.used, p.total, bytes, {
        key: `pool-${p.name}`,
        promised: promised.get(p.name) || 0,
        note: `${p.type}${p.active ? "" : ", inactive"}${p.name === host.default_storage_pool ? ", default" : ""}`,
      }),
    ),
  ];
}

pages.pods = () => {
  const box = $("#pods");
  const load = refresher(async () => {
    const [hosts, vms] = await Promise.all([all("/pods"), all("/vms")]);
    if (!hosts.length) return box.replaceChildren(h("p", { class: "muted" }, "No KVM hosts yet."));
    box.replaceChildren(
      ...hosts.map((host) =>
        h(
          "article",
          { class: "card", "data-pod-id": host.id },
          h("h2", {}, h("a", { href: ui(`/pods/${host.id}`) }, host.name)),
          h("p", { class: "muted" }, `${host.uri} · ${host.architecture} · ${host.usage.vms} VMs`),
          h("div", { class: "bars" }, hostBars(host, vms.filter((vm) => vm.host_id === host.id))),
        ),
      ),
    );
  });
  const form = $("#pod-add");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { uri: form.uri.value.trim(), origin: form.origin.value };
    if (form.name.value.trim()) body.name = form.name.value.trim();
    if (form.password.value) body.password = form.password.value;
    act(form.querySelector("button[type=submit]"), async () => {
      const host = await api("POST", "/pods", body);
      location.assign(ui(`/pods/${host.id}`));
    });
  });
  onEvents(["io.metalbus.compose."], load.soon);
  return load();
};

function fillSelect(select, values, chosen, blank) {
  const options = values.map((v) => h("option", { value: v, selected: v === chosen }, v));
  if (blank !== undefined) options.unshift(h("option", { value: "", selected: !chosen }, blank));
  select.replaceChildren(...options);
}

pages.pod = () => {
  const podId = Number(document.body.dataset.podId);
  const settings = $("#pod-settings");
  const dialog = $("#compose-dialog");
  const form = $("#compose-form");
  let host = null;
  let shownSettings = null;

  const showSettings = () => {
    // Left alone while the operator is editing: a live update must not undo their typing.
    if (settings.contains(document.activeElement) && shownSettings === host.id) return;
    settings.name.value = host.name;
    settings.cpu_over_commit_ratio.value = host.cpu_over_commit_ratio;
    settings.memory_over_commit_ratio.value = host.memory_over_commit_ratio;
    fillSelect(settings.default_storage_pool, host.storage_pools.map((p) => p.name), host.default_storage_pool, "none");
    settings.default_macvlan_mode.value = host.default_macvlan_mode;
    settings.origin.value = host.origin;
    settings.zone.value = host.zone || "";
    settings.pool.value = host.pool || "";
    settings.tags.value = host.tags.join(", ");
    shownSettings = host.id;
  };

  const load = refresher(async () => {
    const [h_, vms] = await Promise.all([api("GET", `/pods/${podId}`), all(`/vms?host_id=${podId}`)]);
    host = h_;
    document.title = `${host.name} · metalbus`;
    $("#pod-title").textContent = host.name;
    const facts = [
      ["URI", host.uri],
      ["Address", host.host_ip || "unknown"],
      ["Architecture", host.architecture],
      ["CPU", `${host.cores} cores at ${host.cpu_speed} MHz`],
      ["Memory", mib(host.memory)],
      ["Correlated", host.correlated ? `yes (${host.correlated_with})` : "no"],
      ["Networks", host.networks.map((n) => n.name).join(", ") || "none"],
      ["Interfaces", host.interfaces.map((i) => `${i.name} (${i.type})`).join(", ") || "none"],
      ["Refreshed", when(host.refreshed_at)],
    ];
    $("#pod-summary").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    $("#pod-bars").replaceChildren(...hostBars(host, vms));
    const tbody = $("#pod-vms tbody");
    if (!vms.length) emptyRow(tbody, 8, "No VMs on this host.");
    else tbody.replaceChildren(...vms.map(vmRow));
    showSettings();
  });

  const vmRow = (vm) => {
    const remove = h("button", { type: "button", class: "secondary danger" }, "Decompose");
    remove.setAttribute("aria-label", `Decompose ${vm.name}`);
    remove.addEventListener("click", () => {
      if (!confirm(`Decompose ${vm.name}? Its disks are deleted.`)) return;
      act(remove, async () => {
        await api("DELETE", `/vms/${vm.id}`);
        await load();
      });
    });
    return h(
      "tr",
      { "data-vm": vm.name },
      h("th", { scope: "row" }, vm.name),
      h("td", {}, label(vm.status)),
      h("td", {}, powerBadge(vm.power_state)),
      h("td", { class: "num" }, vm.cores),
      h("td", { class: "num" }, mib(vm.memory)),
      h("td", {}, vm.disks.map((d) => `${d.label} ${bytes(d.size)} in ${d.pool}`).join(", ")),
      h("td", {}, vm.interfaces.map((i) => `${i.name} ${i.attach_type}:${i.source}${i.mode ? ` (${i.mode})` : ""}${i.ip ? ` ${i.ip}` : ""}`).join(", ")),
      h("td", {}, vm.composed ? remove : h("span", { class: "muted" }, "found on host")),
    );
  };

  settings.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = settings;
    const wanted = {
      name: f.name.value.trim(),
      cpu_over_commit_ratio: Number(f.cpu_over_commit_ratio.value),
      memory_over_commit_ratio: Number(f.memory_over_commit_ratio.value),
      default_storage_pool: f.default_storage_pool.value || null,
      default_macvlan_mode: f.default_macvlan_mode.value,
      origin: f.origin.value,
      zone: f.zone.value.trim() || null,
      pool: f.pool.value.trim() || null,
      tags: f.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
    };
    // Only what changed is sent (a PATCH), so nothing the operator did not touch moves.
    const changes = {};
    for (const [key, value] of Object.entries(wanted)) {
      if (JSON.stringify(value) !== JSON.stringify(host[key] ?? null)) changes[key] = value;
    }
    const saved = $("#settings-saved");
    act(f.querySelector("button[type=submit]"), async () => {
      saved.textContent = "";
      if (!Object.keys(changes).length) {
        saved.textContent = "Nothing changed.";
        return;
      }
      host = await api("PATCH", `/pods/${podId}`, changes);
      shownSettings = null;
      showSettings();
      saved.textContent = "Saved.";
      await load();
    });
  });

  $("#pod-refresh").addEventListener("click", (e) =>
    act(e.currentTarget, async () => {
      await api("POST", `/pods/${podId}/refresh`);
      await load();
    }),
  );

  // The compose dialog: rows of disks (size and storage pool) and interfaces.
  let rowCount = 0;
  const removeButton = (row, what) => {
    const b = h("button", { type: "button", class: "secondary" }, "Remove");
    b.setAttribute("aria-label", `Remove ${what}`);
    b.addEventListener("click", () => row.remove());
    return b;
  };
  const addDisk = (size = 8) => {
    const n = ++rowCount;
    const pools = host.storage_pools.filter((p) => p.active);
    const choose = h("select", { id: `c-pool-${n}`, name: "disk-pool" });
    fillSelect(choose, pools.map((p) => p.name), host.default_storage_pool || pools[0]?.name);
    for (const option of choose.options) {
      const pool = pools.find((p) => p.name === option.value);
      option.textContent = `${pool.name} (${bytes(pool.available)} free)`;
    }
    const row = h(
      "div",
      { class: "row disk" },
      h("div", { class: "field" }, h("label", { for: `c-size-${n}` }, "Size (GB)"), h("input", { id: `c-size-${n}`, name: "disk-size", type: "number", min: 1, value: size, required: true })),
      h("div", { class: "field" }, h("label", { for: `c-pool-${n}` }, "Storage pool"), choose),
    );
    row.append(removeButton(row, "disk"));
    $("#c-disks").append(row);
    return row;
  };
  const addInterface = () => {
    const n = ++rowCount;
    const row = h(
      "div",
      { class: "row iface" },
      h("div", { class: "field" }, h("label", { for: `c-if-${n}` }, "Name"), h("input", { id: `c-if-${n}`, name: "if-name", value: `eth${$("#c-ifaces").children.length}`, required: true, pattern: "[A-Za-z0-9_.\\-]+" })),
      h("div", { class: "field grow" }, h("label", { for: `c-ifc-${n}` }, "Constraints"), h("input", { id: `c-ifc-${n}`, name: "if-constraints", placeholder: "space=dmz,ip=10.0.0.5" })),
    );
    row.append(removeButton(row, "interface"));
    $("#c-ifaces").append(row);
    return row;
  };
  $("#c-add-disk").addEventListener("click", () => addDisk().querySelector("input").focus());
  $("#c-add-iface").addEventListener("click", () => addInterface().querySelector("input").focus());
  $("#compose-open").addEventListener("click", () => {
    form.reset();
    $("#c-disks").replaceChildren();
    $("#c-ifaces").replaceChildren();
    $("#compose-error").hidden = true;
    addDisk();
    dialog.showModal();
    $("#c-hostname").focus();
  });
  $("#compose-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const disks = [...form.querySelectorAll(".row.disk")].map(
      (row, i) => `${i === 0 ? "root" : `disk${i}`}:${row.querySelector("[name=disk-size]").value}(${row.querySelector("[name=disk-pool]").value})`,
    );
    const ifaces = [...form.querySelectorAll(".row.iface")].map((row) => {
      const name = row.querySelector("[name=if-name]").value.trim();
      const constraints = row.querySelector("[name=if-constraints]").value.trim();
      return constraints ? `${name}:${constraints}` : `${name}:`;
    });
    const body = { cores: Number(form.cores.value), memory: Number(form.memory.value), start: form.start.checked };
    if (form.hostname.value.trim()) body.hostname = form.hostname.value.trim();
    if (disks.length) body.storage = disks.join(",");
    if (ifaces.length) body.interfaces = ifaces.join(";");
    act(
      $("#compose-submit"),
      async () => {
        const result = await api("POST", `/pods/${podId}/compose`, body);
        dialog.close();
        const names = result.vms.map((vm) => vm.name).join(", ");
        notice(`Composed ${names}.${result.warnings.length ? ` ${result.warnings.join(" ")}` : ""}`, "info");
        await load();
      },
      $("#compose-error"),
    );
  });

  onEvents(["io.metalbus.compose."], (event) => {
    const id = event.data?.host?.id ?? event.data?.vm?.host_id ?? event.data?.host_id;
    if (id === podId) load.soon();
  });
  return load();
};

// Subnets -------------------------------------------------------------------------------

pages.subnets = () => {
  const box = $("#subnets");
  const load = refresher(async () => {
    const subnets = await all("/subnets");
    if (!subnets.length) return box.replaceChildren(h("p", { class: "muted" }, "No subnets yet."));
    const stats = await Promise.all(subnets.map((s) => api("GET", `/subnets/${s.id}/statistics?free_block_limit=0`)));
    box.replaceChildren(
      ...subnets.map((s, i) => {
        const st = stats[i];
        const ranges = st.ranges.length
          ? h(
              "table",
              { class: "list compact" },
              h("caption", { class: "visually-hidden" }, `Ranges of ${s.cidr}`),
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Range"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, "Use"))),
              h(
                "tbody",
                {},
                st.ranges.map((r) =>
                  h(
                    "tr",
                    {},
                    h("td", { class: "mono" }, `${r.start_ip} – ${r.end_ip}`),
                    h("td", {}, r.type),
                    h("td", {}, bar(`Range ${r.start_ip} – ${r.end_ip}`, r.used, r.total, (n) => `${n}`)),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No IP ranges.");
        return h(
          "article",
          { class: "card", "data-subnet": s.cidr },
          h("h2", {}, s.name === s.cidr ? s.cidr : `${s.name} (${s.cidr})`),
          h("p", { class: "muted" }, `VLAN ${s.vlan_id} · fabric ${s.fabric_id}${s.gateway_ip ? ` · gateway ${s.gateway_ip}` : ""}${s.managed ? "" : " · unmanaged"}`),
          bar("Addresses in use", st.used, st.total, (n) => `${n}`, { key: "utilisation" }),
          ranges,
        );
      }),
    );
  });
  onEvents(["io.metalbus.ipam."], load.soon);
  return load();
};

// Discoveries ---------------------------------------------------------------------------

pages.discoveries = () => {
  const tbody = $("#discoveries tbody");
  const filter = $("#disc-filter");
  const dialog = $("#device-dialog");
  const form = $("#device-form");
  let chosen = null;
  let opener = null;

  const load = refresher(async () => {
    const query = filter.value ? `?unknown=${filter.value}` : "";
    const found = await all(`/discovery/discoveries${query}`);
    if (!found.length) return emptyRow(tbody, 9, "Nothing discovered.");
    tbody.replaceChildren(
      ...found.map((d) => {
        let action = h("span", { class: "muted" }, "known");
        if (!d.ip_known) {
          action = h("button", { type: "button" }, "Add as device");
          action.setAttribute("aria-label", `Add ${d.ip} (${d.mac}) as a device`);
          action.addEventListener("click", (e) => {
            chosen = d;
            opener = e.currentTarget;
            form.reset();
            form.hostname.value = d.hostname ? d.hostname.split(".")[0] : "";
            $("#device-what").textContent = `${d.ip} with MAC ${d.mac}${d.vendor ? ` (${d.vendor})` : ""}`;
            $("#device-error").hidden = true;
            dialog.showModal();
            form.hostname.focus();
          });
        }
        return h(
          "tr",
          { "data-ip": d.ip },
          h("th", { scope: "row", class: "mono" }, d.ip),
          h("td", { class: "mono" }, d.mac),
          h("td", {}, d.vendor || ""),
          h("td", {}, d.hostname || ""),
          h("td", {}, d.subnet_cidr || "none"),
          h("td", {}, d.vid ? `${d.interface}.${d.vid}` : d.interface),
          h("td", {}, h("time", { datetime: d.last_seen }, when(d.last_seen))),
          h("td", {}, `${d.ip_known ? "IP" : ""}${d.ip_known && d.mac_known ? ", " : ""}${d.mac_known ? "MAC" : ""}` || "no"),
          h("td", {}, action),
        );
      }),
    );
  });
  filter.addEventListener("change", load);
  $("#device-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => opener?.isConnected && opener.focus());
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { ip: chosen.ip, mac: chosen.mac, alloc_type: form.alloc_type.value };
    if (form.hostname.value.trim()) body.hostname = form.hostname.value.trim();
    act(
      form.querySelector("button[type=submit]"),
      async () => {
        await api("POST", "/discovery/discoveries/make-known", body);
        dialog.close();
        notice(`${chosen.ip} is now a device's address.`, "info");
        await load();
      },
      $("#device-error"),
    );
  });
  onEvents(["io.metalbus.discovery.", "io.metalbus.ipam.address."], load.soon);
  return load();
};

// -- start -----------------------------------------------------------------------------

async function start() {
  const page = document.body.dataset.page;
  if (page === "login") return pages.login();
  if (!token()) return logout();
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.assign(ui("/login"));
  });
  addEventListener("pagehide", () => live.controller.abort());
  try {
    const me = await api("GET", "/whoami");
    $("#whoami").textContent = `${me.name} (${me.role})`;
  } catch (error) {
    if (error.status === 401) return;
    notice(error.message);
  }
  follow();
  try {
    await pages[page]();
  } catch (error) {
    if (error.status !== 401) notice(error.message);
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
