// qrank's web page: a search tab over /v1/search and a rerank playground over /v1/rerank.
// Plain DOM, no framework; every product field is written with textContent (never as HTML).
'use strict';

const $ = (id) => document.getElementById(id);
const keyInput = $('api-key');
keyInput.value = localStorage.getItem('qrank-api-key') || '';
keyInput.addEventListener('change', () => {
  localStorage.setItem('qrank-api-key', keyInput.value);
  init();
});

async function api(method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (keyInput.value) headers.authorization = `Bearer ${keyInput.value}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = data.error || {};
    const err = new Error(`${e.code || res.status}: ${e.message || res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The language of a text, by script and a few Spanish marks: enough to label a hit.
function detectLanguage(text) {
  if (/[\u3040-\u30ff]/.test(text)) return 'ja';
  if (/[\uac00-\ud7af]/.test(text)) return 'ko';
  if (/[\u4e00-\u9fff]/.test(text)) return 'zh';
  if (/[\u0400-\u04ff]/.test(text)) return 'ru';
  if (/[\u0600-\u06ff]/.test(text)) return 'ar';
  if (/[ñ¿¡]|\b(para|con|de la|del|los|las|inalámbric\w*|auriculares|zapatillas)\b/i.test(text)) return 'es';
  if (/[àâçèêëîïôûœ]|\b(pour|avec|sans)\b/i.test(text)) return 'fr';
  if (/[äöüß]|\b(für|mit|und)\b/i.test(text)) return 'de';
  return 'en';
}

// The title to show: the one in the shopper's language when the product has it.
function pickTitle(fields, queryLanguage) {
  const titles = Object.entries(fields).filter(([k, v]) => /^(title|name)(_[a-z]{2})?$/.test(k) && typeof v === 'string' && v);
  const own = titles.find(([k]) => k.endsWith(`_${queryLanguage}`));
  const [key, text] = own || titles[0] || ['id', ''];
  const m = key.match(/_([a-z]{2})$/);
  return { text, language: m ? m[1] : detectLanguage(text), languages: titles.map(([k]) => (k.match(/_([a-z]{2})$/) || [])[1]).filter(Boolean) };
}

const fmt = (x, digits = 3) => (typeof x === 'number' ? x.toFixed(digits) : '–');

// Where a hit stood in each recall list: "keyword #1 · vector #12" (– where a list did not hold it).
function ranksText(explain) {
  const r = (explain && explain.recall) || {};
  const at = (rank) => (typeof rank === 'number' ? `#${rank}` : '–');
  return `keyword ${at(r.keyword_rank)} · vector ${at(r.vector_rank)}`;
}

// --- tabs ---
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener('click', () => {
    for (const t of document.querySelectorAll('[role="tab"]')) {
      const selected = t === tab;
      t.setAttribute('aria-selected', String(selected));
      $(t.getAttribute('aria-controls')).hidden = !selected;
    }
  });
}

// --- models and collections ---
async function init() {
  try {
    const models = await api('GET', '/v1/models');
    $('models').textContent = models.data.map((m) => `${m.task}: ${m.info.description}`).join(' · ');
    $('synthetic').hidden = !models.data.some((m) => m.info.synthetic);
  } catch (err) {
    $('models').textContent = err.status === 401 ? 'this server needs an API key' : String(err.message);
  }
  const select = $('collection');
  select.replaceChildren();
  try {
    const { data } = await api('GET', '/v1/collections');
    for (const c of data) {
      const option = new Option(c.error ? `${c.name} (cannot be opened: ${c.error.code})` : `${c.name} (${c.size})`, c.name);
      option.disabled = Boolean(c.error);
      select.append(option);
    }
    const demo = data.find((c) => c.name === 'demo');
    if (demo) select.value = 'demo';
    if (!data.length) $('search-status').textContent = 'No collection yet: create one with POST /v1/collections or `qrank index`.';
  } catch (err) {
    $('search-status').textContent = `Search is not available: ${err.message}`;
  }
}

// --- search ---
$('search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const query = $('query').value.trim();
  if (!query) return;
  const filter = {};
  if ($('category').value.trim()) filter.category = $('category').value.trim();
  if ($('max-price').value !== '') filter.price = { lte: Number($('max-price').value) };
  const status = $('search-status');
  status.className = 'muted';
  status.textContent = 'searching…';
  $('search-button').disabled = true;
  try {
    const r = await api('POST', '/v1/search', {
      collection: $('collection').value,
      query,
      ...($('recall').value ? { recall: $('recall').value } : {}),
      recall_k: Number($('recall-k').value) || 50,
      top_n: Number($('top-n').value) || 10,
      rerank: $('rerank').checked,
      explain: true,
      ...(Object.keys(filter).length ? { filter } : {}),
    });
    renderResults(r, detectLanguage(query));
    const t = r.timings;
    status.textContent = `${r.results.length} results from ${r.candidates} candidates (${r.recall} recall) · embed ${fmt(t.embed_ms, 1)} ms · keyword ${fmt(t.keyword_ms, 1)} ms · vector ${fmt(t.recall_ms, 1)} ms · fetch ${fmt(t.fetch_ms, 1)} ms · rerank ${fmt(t.rerank_ms, 1)} ms · total ${fmt(t.total_ms, 1)} ms`;
  } catch (err) {
    status.className = 'error';
    status.textContent = err.message;
    $('results').replaceChildren();
  } finally {
    $('search-button').disabled = false;
  }
});

function renderResults(r, queryLanguage) {
  const list = $('results');
  list.replaceChildren();
  for (const hit of r.results) {
    const f = hit.fields;
    const title = pickTitle(f, queryLanguage);
    const li = el('li', 'hit');
    li.dataset.id = hit.id;
    const head = el('div');
    head.append(el('span', 'lang', title.language), el('span', 'hit-title', title.text || hit.id));
    const meta = el('div', 'meta');
    const price = typeof f.price === 'number' ? `${f.price.toFixed(2)} ${f.currency || ''}`.trim() : '';
    meta.append(
      ...(typeof f.sku === 'string' ? [el('span', 'sku', f.sku)] : []),
      el('span', 'price', price ? `price ${price}` : 'no price'),
      el('span', 'category', String(f.category || 'no category')),
      el('span', 'rerank-score', `rerank ${fmt(hit.rerank_score)}`),
      el('span', 'recall-score', `recall ${fmt(hit.recall_score)}`),
      el('span', 'ranks', ranksText(hit.explain)),
      el('span', 'score', `score ${fmt(hit.score)}`),
      el('span', 'languages', title.languages.length ? `languages: ${title.languages.join(', ')}` : ''),
    );
    li.append(head, meta);
    list.append(li);
  }
}

// --- rerank playground ---
$('rerank-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const documents = $('rr-documents').value.split('\n').map((s) => s.trim()).filter(Boolean);
  const status = $('rerank-status');
  status.className = 'muted';
  status.textContent = 'scoring…';
  try {
    const t0 = performance.now();
    const instruction = $('rr-instruction').value.trim();
    const r = await api('POST', '/v1/rerank', { query: $('rr-query').value, documents, return_documents: true, ...(instruction ? { instruction } : {}) });
    const list = $('ranked');
    list.replaceChildren();
    for (const item of r.results) {
      const li = el('li');
      li.append(el('div', 'doc', item.document.text), el('span', 'muted relevance', fmt(item.relevance_score, 4)));
      const track = el('div', 'bar-track');
      const bar = el('div', 'bar');
      bar.style.width = `${Math.max(0, Math.min(1, item.relevance_score)) * 100}%`;
      track.append(bar);
      li.append(track);
      list.append(li);
    }
    status.textContent = `${documents.length} documents scored in ${(performance.now() - t0).toFixed(0)} ms (${r.usage ? r.usage.total_tokens : '?'} tokens)`;
  } catch (err) {
    status.className = 'error';
    status.textContent = err.message;
  }
});

init();
