// The review desk. A file, not inline: the Content-Security-Policy admits no inline script.
// One item at a time, worked from the keyboard (? shows the keys); the queue comes page by page from /review/api.
'use strict';

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const session = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2);
const desk = {items: [], index: 0, offset: 0, total: 0, details: new Map(), mine: [], sent: new Set(), onConfirm: null};

function el(tag, props, ...children) {
  const {dataset, ...rest} = props || {};
  const node = Object.assign(document.createElement(tag), rest);
  Object.assign(node.dataset, dataset || {});
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, options) {
  const init = {credentials: 'same-origin', headers: {'X-Review-Session': session}, ...(options || {})};
  if (init.body !== undefined) {
    init.method = init.method || 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(init.body);
  }
  const reply = await fetch(path, init);
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const error = new Error(data.error ? data.error.message + (data.error.fix ? ' ' + data.error.fix : '') : 'HTTP ' + reply.status);
    error.status = reply.status; error.info = data.error || {};
    throw error;
  }
  return data;
}

function filterObject() {
  const out = {};
  for (const field of $('filters').elements) {
    if (!field.name || field.value === '') continue;
    out[field.name] = field.type === 'number' ? Number(field.value) : field.value;
  }
  return out;
}

function toast(text, bad) {
  const box = $('toast');
  box.textContent = text; box.className = bad ? 'bad show' : 'show';
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { box.className = ''; }, bad ? 8000 : 2500);
}

function setWaiting(n) { $('waiting').textContent = n + ' waiting'; document.title = `review desk (${n} waiting)`; }

async function pollWaiting() {
  try { setWaiting((await api('/review/api/waiting')).waiting); } catch (error) { /* shown on the next action */ }
}

// --- the list -------------------------------------------------------------------------------------------------
async function loadPage(keepId) {
  const params = new URLSearchParams({...filterObject(), offset: desk.offset, limit: PAGE});
  const page = await api('/review/api/items?' + params);
  desk.items = page.items.filter((item) => !desk.sent.has(item.review_id));
  desk.total = page.total; setWaiting(page.waiting);
  renderList();
  const at = keepId ? desk.items.findIndex((item) => item.review_id === keepId) : 0;
  show(at < 0 ? Math.min(desk.index, desk.items.length - 1) : at);
}

function renderList() {
  const list = $('items');
  list.replaceChildren(...desk.items.map((item, i) => {
    const label = item.text || '(no caption)';
    const tags = item.tags.filter((t) => !t.includes('.')).join(', ');
    return el('li', {className: 'entry' + (item.safety ? ' safety' : ''), dataset: {index: i, reviewId: item.review_id}},
      el('span', {className: 'entry-text', textContent: label}),
      el('span', {className: 'muted', textContent: ` ${item.style} · ${item.locale}${tags ? ' · ' + tags : ''}`}));
  }));
  const first = desk.items.length ? desk.offset + 1 : 0;
  $('page-info').textContent = `${first}–${desk.offset + desk.items.length} of ${desk.total}`;
  $('prev-page').disabled = desk.offset === 0;
  $('next-page').disabled = desk.offset + PAGE >= desk.total;
}

function current() { return desk.items[desk.index]; }

function show(i) {
  if (!desk.items.length) {
    $('item').hidden = true; $('empty').hidden = false;
    if (desk.total > desk.sent.size && desk.total > 0 && !show.reloading) { show.reloading = true; loadPage().finally(() => { show.reloading = false; }); }
    return;
  }
  desk.index = Math.max(0, Math.min(i, desk.items.length - 1));
  const item = current();
  for (const li of $('items').children) li.classList.toggle('current', li.dataset.reviewId === item.review_id);
  $('item').hidden = false; $('empty').hidden = true;
  const known = desk.details.get(item.review_id);
  if (known && known.view) render(known.view); else renderSummary(item);
  detail(item.review_id).then((view) => { if (current() && current().review_id === view.review_id) render(view); })
    .catch((error) => toast(error.message, true));
  if (item.verdict === null) claim(item.review_id);
  for (const next of [desk.index + 1, desk.index + 2]) if (desk.items[next]) detail(desk.items[next].review_id).catch(() => {});
  if (desk.items.length - desk.index < 5 && desk.offset + desk.items.length < desk.total - desk.sent.size) refill();
}

function detail(id) {
  let entry = desk.details.get(id);
  if (!entry) {
    entry = {promise: api('/review/api/items/' + encodeURIComponent(id))};
    entry.promise.then((view) => { entry.view = view; new Image().src = photoUrl(id); }, () => desk.details.delete(id));
    desk.details.set(id, entry);
  }
  return entry.promise;
}

async function refill() {
  if (refill.busy) return;
  refill.busy = true;
  try {
    const params = new URLSearchParams({...filterObject(), offset: desk.offset, limit: PAGE});
    const page = await api('/review/api/items?' + params);
    const have = new Set(desk.items.map((item) => item.review_id));
    desk.items.push(...page.items.filter((item) => !have.has(item.review_id) && !desk.sent.has(item.review_id)));
    desk.total = page.total; renderList();
    for (const li of $('items').children) li.classList.toggle('current', current() && li.dataset.reviewId === current().review_id);
  } finally { refill.busy = false; }
}

async function claim(id) {
  try { await api(`/review/api/items/${encodeURIComponent(id)}/claim`, {body: {}}); }
  catch (error) {
    if (error.status !== 409) return;
    toast(error.message, true);
    const at = desk.items.findIndex((item) => item.review_id === id);
    if (at >= 0) { desk.items.splice(at, 1); renderList(); if (at === desk.index) show(desk.index); }
  }
}

// --- one item -------------------------------------------------------------------------------------------------
function photoUrl(id) { return '/review/images/' + encodeURIComponent(id); }

function renderSummary(item) {
  $('item').dataset.reviewId = item.review_id;
  delete $('item').dataset.full;  // the full view, when it comes, starts the edit box afresh
  if ($('edit-text').dataset.touched !== item.review_id) $('edit-text').value = '';
  $('caption').textContent = item.text || '(none)';
  $('draft').textContent = '';
  setPhoto(item.review_id);
}

function setPhoto(id) {
  const photo = $('photo');
  if (photo.getAttribute('src') === photoUrl(id)) return;
  $('photo-note').textContent = '';
  photo.src = photoUrl(id);
}

function render(view) {
  const box = $('item');
  const fresh = box.dataset.reviewId !== view.review_id || !box.dataset.full;
  box.dataset.reviewId = view.review_id; box.dataset.full = '1';
  box.classList.toggle('audit', view.audit);
  const photo = $('photo');
  setPhoto(view.review_id);
  photo.alt = 'photo of ' + (view.key || view.review_id);
  drawBoxes(view.boxes);
  $('image-text').textContent = view.image_text ? 'text read in the photo: “' + view.image_text + '”' : '';
  $('source').textContent = view.source || 'source not recorded';
  const confidence = view.confidence === null || view.confidence === undefined ? '' : ` · confidence ${view.confidence.toFixed(2)}`;
  $('meta').textContent = `${view.style} · ${view.language || view.locale} (${view.locale})${confidence} · drafter ${view.drafter || '?'}` +
    ` · refiner ${view.refiner || '?'} · queued ${view.queued_at}`;
  $('reasons').replaceChildren(...view.reasons.map((reason) => el('div', {className: 'reason'},
    el('p', {className: 'message', textContent: reason.message}),
    reason.fix ? el('p', {className: 'fix', textContent: 'To fix: ' + reason.fix}) : null,
    reason.detail ? el('details', {className: 'detail'}, el('summary', {textContent: 'technical detail'}),
      el('pre', {textContent: reason.detail})) : null)));
  const ops = diff(view.draft, view.text);
  $('caption').replaceChildren(...(view.text ? ops.filter((op) => op.t !== 'del').map(token('ins')) : [el('span', {className: 'muted', textContent: '(no caption)'})]));
  $('draft').replaceChildren(...ops.filter((op) => op.t !== 'add').map(token('del')));
  $('facts-box').hidden = !view.facts.length;
  $('facts').replaceChildren(...view.facts.map((fact) => el('li', {className: fact.used ? 'used' : ''},
    el('span', {textContent: fact.text}), el('span', {className: 'muted', textContent: ` — ${fact.source}`}))));
  if (fresh) {
    // What the reviewer already typed for this item (the view can arrive after the first keys) is kept.
    if ($('edit-text').dataset.touched !== view.review_id) { $('edit-text').value = view.edit_start; $('note').value = ''; }
    $('edit-text').placeholder = view.edit_hint || '';
    $('edit-hint').textContent = view.edit_hint;
    $('status').textContent = ''; $('status').className = 'status';
  }
  $('edit-lang').textContent = view.language || view.locale;
  const verdict = view.verdict;
  $('verdict-note').hidden = !verdict;
  $('verdict-note').textContent = verdict ? `${verdict.verdict} by ${verdict.reviewer || 'a reviewer'} at ${verdict.at}` : '';
  $('history').replaceChildren(...view.history.map((h) => el('li', {textContent:
    `${h.at} · ${h.reviewer || 'a reviewer'} · ${h.action}` + (h.after !== null && h.after !== undefined ? `: “${h.before || ''}” → “${h.after}”` : '')})));
  $('history-box').hidden = !view.history.length;
}

function token(mark) {
  return (op) => (op.t === 'same' || /^\s+$/.test(op.s)) ? document.createTextNode(op.s) : el(mark, {textContent: op.s});
}

// Word diff (longest common subsequence of words and spaces): what the caption changed from the draft.
function diff(before, after) {
  const a = (before || '').match(/\s+|[^\s]+/g) || [], b = (after || '').match(/\s+|[^\s]+/g) || [];
  if (a.length * b.length > 250000) return [{t: 'del', s: before}, {t: 'add', s: after}];
  const lcs = Array.from({length: a.length + 1}, () => new Uint16Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--)
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const ops = []; let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { ops.push({t: 'same', s: a[i]}); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) ops.push({t: 'del', s: a[i++]});
    else ops.push({t: 'add', s: b[j++]});
  }
  while (i < a.length) ops.push({t: 'del', s: a[i++]});
  while (j < b.length) ops.push({t: 'add', s: b[j++]});
  return ops;
}

const SVG = 'http://www.w3.org/2000/svg';
function drawBoxes(boxes) {
  const svg = $('overlay');
  svg.replaceChildren();
  const faces = boxes.faces.length, texts = boxes.texts.length;
  $('boxes-note').textContent = (!boxes.screened ? 'faces: not screened' : !boxes.faces_counted
    ? 'faces: not counted (face detector unavailable)' : `${faces} face${faces === 1 ? '' : 's'} outlined`) +
    (texts ? ` · ${texts} text line${texts === 1 ? '' : 's'} outlined` : boxes.text_read ? ' · no text read' : '');
  if (!boxes.width || !boxes.height) return;
  svg.setAttribute('viewBox', `0 0 ${boxes.width} ${boxes.height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const label = (kind, found) => found.score === null ? kind : `${kind} ${found.score.toFixed(2)}`;
  const shapes = [...boxes.faces.map((f) => ['face', f.box, label('face', f)]),
                  ...boxes.texts.map((t) => ['textbox', t.box, label('text', t)])];
  for (const [kind, [x0, y0, x1, y1], label] of shapes) {
    const rect = document.createElementNS(SVG, 'rect');
    for (const [k, v] of Object.entries({x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: kind, 'vector-effect': 'non-scaling-stroke'})) rect.setAttribute(k, v);
    const title = document.createElementNS(SVG, 'title'); title.textContent = label; rect.append(title);
    svg.append(rect);
  }
}

// --- verdicts -------------------------------------------------------------------------------------------------
function reviewer() { return $('reviewer').value; }

function status(text, bad) { $('status').textContent = text; $('status').className = bad ? 'status error' : 'status'; }

function take() {  // the current item leaves the list at once (the next one shows); the verdict is sent behind it
  const item = current(), index = desk.index;
  desk.items.splice(index, 1); desk.sent.add(item.review_id);
  delete $('edit-text').dataset.touched;
  renderList(); show(index);
  return {item, index};
}

function putBack(taken) {
  desk.sent.delete(taken.item.review_id); desk.details.delete(taken.item.review_id);
  delete $('edit-text').dataset.touched;
  desk.items.splice(Math.min(taken.index, desk.items.length), 0, taken.item);
  renderList(); show(taken.index);
}

async function quick(verdict) {
  const item = current();
  if (!item || item.verdict) return;
  if (verdict === 'approve' && !item.text) { status('There is no caption to approve: edit it (e), ask for another attempt (t) or reject it (r).', true); return; }
  const body = {review_id: item.review_id, verdict, reviewer: reviewer(), note: $('note').value};
  const taken = take();
  try {
    await api('/review/decisions', {body});
    desk.mine.push(taken);
    toast(`${verdict === 'approve' ? 'approved' : 'rejected'}: ${item.text || item.review_id}`);
    pollWaiting();
  } catch (error) {
    toast(`not recorded (${verdict}): ${error.message}`, true);
    if (error.status !== 409) putBack(taken);
  }
}

async function saveEdit() {
  const item = current();
  if (!item || item.verdict) return;
  const text = $('edit-text').value;
  if (!text.trim()) { status('Write the caption first (the box is empty).', true); return; }
  status('checking…');
  try {
    await api('/review/decisions', {body: {review_id: item.review_id, verdict: 'edit', text, reviewer: reviewer(), note: $('note').value}});
  } catch (error) {
    status(error.message, true);
    if (error.info.suggestion) {
      const use = el('button', {type: 'button', className: 'suggestion', textContent: `Use the fix: “${error.info.suggestion}”`});
      use.addEventListener('click', () => { $('edit-text').value = error.info.suggestion; $('edit-text').focus(); });
      $('status').append(' ', use);
    }
    return;
  }
  $('edit-text').blur();
  desk.mine.push(take());
  toast('edit saved');
  pollWaiting();
}

async function undo() {
  const last = desk.mine.pop();
  if (!last) { toast('nothing of yours to undo'); return; }
  try {
    await api('/review/decisions', {body: {review_id: last.item.review_id, verdict: 'undo', reviewer: reviewer()}});
    putBack(last); toast('undone: the item waits again'); pollWaiting();
  } catch (error) { toast('undo failed: ' + error.message, true); }
}

async function retry() {
  const item = current();
  if (!item) return;
  status('asking for another attempt…');
  try {
    const again = await api(`/review/api/items/${encodeURIComponent(item.review_id)}/retry`, {body: {}, headers: {'X-Review-Session': session, 'X-Reviewer': reviewer()}});
    if (again.text) $('edit-text').value = again.text;
    const why = again.reasons.map((r) => r.message).join(' ');
    status(`Another attempt by ${again.refined_by || 'the chain'} (${again.status})${why ? ': ' + why : ''}` +
      (again.text ? ' It is in the edit box: Ctrl+Enter there saves it as your edit.' : ' It wrote nothing.'), again.status !== 'ok');
    desk.details.delete(item.review_id);
  } catch (error) { status(error.message, true); }
}

async function bulk(verdict) {
  const body = {verdict, filters: filterObject()};
  let plan;
  try { plan = await api('/review/api/bulk/preview', {body}); } catch (error) { toast(error.message, true); return; }
  const verb = verdict === 'approve' ? 'Approve' : 'Reject';
  if (!plan.count) { toast(`No item to ${verdict} with these filters` + (plan.left_out ? ` (${plan.left_out} left out).` : '.')); return; }
  $('confirm-text').textContent = `${verb} ${plan.count} item${plan.count === 1 ? '' : 's'} matching these filters?` +
    (plan.left_out ? ` ${plan.left_out} matching item(s) are left out` + (verdict === 'approve'
      ? ' (held for safety, personal data or injection, without a caption, or decided).' : ' (decided).') : '');
  desk.onConfirm = async () => {
    try {
      const done = await api('/review/api/bulk', {body: {...body, expected: plan.count}});
      toast(`${verb === 'Approve' ? 'approved' : 'rejected'} ${done.done} item(s)`);
    } catch (error) { toast(error.message, true); }
    desk.offset = 0; desk.details.clear(); await loadPage();
  };
  $('confirm').hidden = false; $('confirm-yes').focus();
}

function closeConfirm(yes) {
  $('confirm').hidden = true;
  const act = desk.onConfirm; desk.onConfirm = null;
  if (yes && act) act();
}

function move(step) { if (desk.items.length) show(desk.index + step); }

const KEYS = {
  j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
  a: () => quick('approve'), r: () => quick('reject'), s: () => move(1), u: undo, t: retry,
  e: () => { const box = $('edit-text'); box.focus(); box.setSelectionRange(box.value.length, box.value.length); },
  d: () => { const open = !document.querySelector('.reason details[open]'); for (const d of document.querySelectorAll('.reason details')) d.open = open; },
  '?': () => { $('help').hidden = !$('help').hidden; },
  A: () => bulk('approve'), R: () => bulk('reject'),
};

document.addEventListener('keydown', (event) => {
  if (!$('confirm').hidden) {
    if (event.key === 'Enter' || event.key === 'Escape') { event.preventDefault(); closeConfirm(event.key === 'Enter'); }
    return;
  }
  if (!$('help').hidden && (event.key === 'Escape' || event.key === '?')) { event.preventDefault(); $('help').hidden = true; return; }
  const target = event.target;
  if (target.closest && target.closest('input, textarea, select')) {
    if (target.id === 'edit-text' && event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); saveEdit(); }
    else if (event.key === 'Escape') target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const act = KEYS[event.key];
  if (act) { event.preventDefault(); act(); }
});

document.addEventListener('click', (event) => {
  const button = event.target.closest('button');
  if (!button) return;
  const acts = {approve: () => quick('approve'), reject: () => quick('reject'), save: saveEdit, skip: () => move(1), undo, retry};
  if (button.dataset.act) acts[button.dataset.act]();
  else if (button.id === 'help-button') KEYS['?']();
  else if (button.id === 'bulk-approve') bulk('approve');
  else if (button.id === 'bulk-reject') bulk('reject');
  else if (button.id === 'confirm-yes' || button.id === 'confirm-no') closeConfirm(button.id === 'confirm-yes');
  else if (button.id === 'prev-page' || button.id === 'next-page') {
    desk.offset = Math.max(0, desk.offset + (button.id === 'next-page' ? PAGE : -PAGE)); loadPage();
  }
});
$('items').addEventListener('click', (event) => { const entry = event.target.closest('li.entry'); if (entry) show(Number(entry.dataset.index)); });
$('edit-text').addEventListener('input', () => { $('edit-text').dataset.touched = $('item').dataset.reviewId; });
$('filters').addEventListener('change', () => { desk.offset = 0; desk.details.clear(); loadPage(); });
$('filters').addEventListener('submit', (event) => event.preventDefault());
$('photo').addEventListener('error', () => { $('photo-note').textContent = 'image unavailable'; $('overlay').replaceChildren(); });
$('photo').addEventListener('load', () => { $('photo-note').textContent = ''; });

async function facets() {
  const values = await api('/review/api/facets');
  for (const [name, options] of Object.entries(values)) {
    const select = $('filters').elements[name];
    if (select) select.append(...options.map((value) => el('option', {value, textContent: value})));
  }
}

facets().catch(() => {});
loadPage().catch((error) => toast(error.message, true));
setInterval(pollWaiting, 5000);
// Keep the claim on the item being judged (claims lapse after two minutes without renewal).
setInterval(() => { const item = current(); if (item && !item.verdict && !$('item').hidden) claim(item.review_id); }, 60000);
