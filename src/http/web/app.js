// sshvisor's web page: the VM list (polled) and a live console (WebSocket + xterm.js).
// The token stays in this tab's sessionStorage; it travels as a bearer header for fetch and as a
// WebSocket subprotocol, never in a URL.
'use strict';

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
let token = sessionStorage.getItem('sshvisor-token') || '';
let me = null;
let pollTimer = null;
let consoleView = null;

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  token = decodeURIComponent(m[1]);
  sessionStorage.setItem('sshvisor-token', token);
  // Out of the address bar and history.
  history.replaceState(null, '', location.pathname + location.search);
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${token}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(body.error || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function showLogin(message) {
  $('login').hidden = false;
  $('vms').hidden = true;
  $('console').hidden = true;
  $('forget').hidden = true;
  $('who').textContent = message || '';
}

async function start() {
  takeTokenFromFragment();
  if (!token) return showLogin();
  try {
    me = await api('/api/whoami');
  } catch (err) {
    token = '';
    sessionStorage.removeItem('sshvisor-token');
    return showLogin(err.status === 401 ? 'that token is not valid (revoked?)' : err.message);
  }
  $('login').hidden = true;
  $('vms').hidden = false;
  $('forget').hidden = false;
  $('who').textContent = me.kind === 'admin' ? 'admin' : `token for ${me.vm} (${me.control ? 'owner' : 'read-only'})`;
  await refresh();
  pollTimer = setInterval(refresh, POLL_MS);
}

function formatUptime(s) {
  if (s === null || s === undefined) return '-';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refresh() {
  let list;
  try {
    list = await api('/api/vms');
    $('error').hidden = true;
  } catch (err) {
    $('error').textContent = `could not list VMs: ${err.message}`;
    $('error').hidden = false;
    return;
  }
  const rows = $('vm-rows');
  rows.replaceChildren(
    ...list.vms.map((vm) => {
      const tr = document.createElement('tr');
      tr.dataset.vm = vm.name;
      const open = document.createElement('button');
      open.type = 'button';
      open.textContent = 'console';
      open.addEventListener('click', () => openConsole(vm.name));
      const last = vm.console[vm.console.length - 1] || '';
      tr.append(cell(vm.name, 'name'), cell(vm.state, `state state-${vm.state}`), cell(vm.image, 'image'), cell(`${vm.vcpus} vCPU, ${vm.memoryMiB} MiB, ${vm.diskMiB} MiB disk`, 'shape'), cell(formatUptime(vm.uptimeSeconds)), cell(String(vm.sessions)), cell(last, 'line'));
      const td = document.createElement('td');
      td.append(open);
      tr.append(td);
      return tr;
    }),
  );
  $('empty').hidden = list.vms.length > 0;
  if (consoleView) {
    const vm = list.vms.find((v) => v.name === consoleView.name);
    $('console-status').textContent = vm ? vm.state : '';
  }
}

function closeConsole() {
  if (!consoleView) return;
  consoleView.closing = true;
  consoleView.ws.close();
  consoleView.term.dispose();
  consoleView = null;
  $('console').hidden = true;
}

function openConsole(name) {
  closeConsole();
  $('console').hidden = false;
  $('console-name').textContent = name;
  $('console-action').textContent = '';
  $('console-mode').textContent = 'connecting';
  const control = me.kind === 'admin' || (me.control && me.vm === name);
  for (const b of document.querySelectorAll('[data-action]')) b.hidden = !control;
  const term = new Terminal({ cols: 120, rows: 32, scrollback: 5000, fontSize: 13, disableStdin: true });
  term.open($('terminal'));
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/api/vms/${encodeURIComponent(name)}/console/ws`, ['sshvisor.console', `bearer.${token}`]);
  ws.binaryType = 'arraybuffer';
  const view = { name, term, ws, closing: false };
  consoleView = view;
  const encoder = new TextEncoder();
  let readOnly = true;
  ws.addEventListener('message', (ev) => {
    if (typeof ev.data === 'string') {
      // Text frames are control messages; console bytes come as binary frames.
      const msg = JSON.parse(ev.data);
      if (msg.type === 'hello') {
        readOnly = msg.readOnly;
        term.options.disableStdin = readOnly;
        $('console-mode').textContent = readOnly ? 'read-only' : 'interactive';
        $('console-mode').className = readOnly ? 'badge' : 'badge rw';
        if (!readOnly) term.focus();
      }
      return;
    }
    term.write(new Uint8Array(ev.data));
  });
  ws.addEventListener('close', () => {
    if (view.closing) return;
    $('console-mode').textContent = 'disconnected';
  });
  term.onData((data) => {
    if (!readOnly && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
  });
}

async function act(action) {
  if (!consoleView) return;
  const name = consoleView.name;
  $('console-action').textContent = `${action}...`;
  try {
    const r = await api(`/api/vms/${encodeURIComponent(name)}/${action}`, { method: 'POST' });
    $('console-action').textContent = `${action}: ${r.result}`;
  } catch (err) {
    $('console-action').textContent = `${action} failed: ${err.message}`;
  }
  refresh();
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token-input').value.trim();
  sessionStorage.setItem('sshvisor-token', token);
  $('token-input').value = '';
  start();
});
$('forget').addEventListener('click', () => {
  sessionStorage.removeItem('sshvisor-token');
  token = '';
  clearInterval(pollTimer);
  closeConsole();
  showLogin();
});
$('console-close').addEventListener('click', closeConsole);
for (const b of document.querySelectorAll('[data-action]')) b.addEventListener('click', () => act(b.dataset.action));
start();
