#!/usr/bin/env node
// Keyword recall at scale, through the library's own paths (Collection.ingest, SearchEngine.search):
//
// 1. ingestion throughput with and without the keyword index: --ingest products (generated, three
//    languages, SKU codes) into a collection whose mapping has keyword columns and into one with
//    `keyword: false`, alternating, --repeat times each; products/s and database size;
// 2. at --products (1M by default) generated products in one collection (HNSW, M 16, efC 40): the
//    keyword stage's latency beside vector recall's, from the timings of the same searches (recall
//    'hybrid', no rerank), per query kind (SKU codes, model numbers, English, Chinese and Spanish
//    words), then keyword-only and vector-only searches. The store is written as a collection made
//    before keyword indexes would hold it: the product rows (mapping.ts's toProduct, the rows
//    ingest writes) and a saved vector index of random unit vectors under the stored format's ids
//    (vid x 16), marked indexed, so opening it builds the keyword index (timed, with progress: what
//    such a collection pays once). Ingesting a million products through Collection.ingest would
//    save the whole vector index after every batch of 256, hours at this size.
//
// The embedder is the synthetic tiny one by default (64 dimensions, so vector recall is cheaper
// than with a real model's 1024), the same in both parts. Writes bench/results/keyword-<date>.json.
//
//   node bench/keyword-bench.mjs [--products 1000000] [--ingest 20000] [--repeat 2] [--queries 200] [--threads 2]
import { mkdtempSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { Embedder, SearchEngine, VectorIndex } = require(join(root, 'dist', 'index.js'));
const { toProduct } = require(join(root, 'dist', 'search', 'mapping.js'));
const Database = require('better-sqlite3');
const { values: opt } = parseArgs({
  options: {
    products: { type: 'string', default: '1000000' },
    ingest: { type: 'string', default: '20000' },
    repeat: { type: 'string', default: '2' },
    queries: { type: 'string', default: '200' },
    threads: { type: 'string', default: '2' },
    embedder: { type: 'string', default: join(root, 'test', '.models', 'tiny-embedder.gguf') },
    out: { type: 'string', default: '' },
  },
});

// --- a generated catalog: brands, model numbers, SKUs, titles in English, Chinese and Spanish ---

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}
const pick = (r, xs) => xs[Math.floor(r() * r() * xs.length)]; // skewed: the first words are common
const EN = ['wireless', 'headphones', 'noise', 'cancelling', 'bluetooth', 'speaker', 'waterproof', 'running', 'shoes', 'jacket', 'kitchen', 'knife', 'set', 'stainless', 'steel', 'cotton', 'sheet', 'queen', 'king', 'backpack', 'laptop', 'charger', 'cable', 'case', 'screen', 'protector', 'smart', 'plug', 'bulb', 'camera', 'vacuum', 'robot', 'air', 'fryer', 'kettle', 'electric', 'blanket', 'pillow', 'towel', 'drill', 'cordless', 'battery', 'toy', 'puzzle', 'dog', 'harness', 'cat', 'tree', 'suitcase', 'carry-on', 'hard', 'shell', 'women', 'men', 'kids', 'lightweight', 'portable', 'foldable', 'mini', 'pro'];
const ZH = ['无线', '蓝牙', '降噪', '耳机', '音箱', '防水', '跑步鞋', '夹克', '厨房', '刀具', '套装', '不锈钢', '纯棉', '床单', '背包', '笔记本', '充电器', '数据线', '手机壳', '贴膜', '智能', '插座', '灯泡', '摄像头', '扫地机', '空气炸锅', '电热水壶', '毛毯', '枕头', '毛巾', '电钻', '锂电', '玩具', '拼图', '狗', '胸背带', '猫爬架', '行李箱', '登机箱', '女款', '男款', '儿童', '轻便', '便携', '折叠'];
const ES = ['inalámbricos', 'auriculares', 'cancelación', 'ruido', 'altavoz', 'impermeable', 'zapatillas', 'chaqueta', 'cocina', 'cuchillos', 'juego', 'acero', 'inoxidable', 'algodón', 'sábanas', 'mochila', 'portátil', 'cargador', 'cable', 'funda', 'protector', 'pantalla', 'enchufe', 'bombilla', 'cámara', 'aspiradora', 'freidora', 'hervidor', 'manta', 'almohada', 'toalla', 'taladro', 'batería', 'juguete', 'perro', 'arnés', 'gato', 'maleta', 'cabina', 'mujer', 'hombre', 'niños', 'ligero', 'plegable'];
const COLORS = ['Black', 'White', 'Navy', 'Grey', 'Red', 'Blue', 'Green', 'Pink', 'Olive', 'Silver'];
const SIZES = ['XS', 'S', 'M', 'L', 'XL', '20-Inch', '28-Inch', '5.5L', '1.7L', '150x200cm', 'EU 42', '256GB'];
const BRANDS = Array.from({ length: 400 }, (_, i) => {
  const r = rng(1000 + i);
  const syl = ['so', 'qui', 'lo', 'tun', 'mo', 'ra', 'vel', 'ix', 'for', 'ja', 'da', 'gri', 'vo', 'ca', 'ze', 'nor', 'vik', 'hor', 'nix', 'pa'];
  const name = Array.from({ length: 2 + Math.floor(r() * 2) }, () => syl[Math.floor(r() * syl.length)]).join('');
  return name[0].toUpperCase() + name.slice(1) + (i >= syl.length * syl.length ? i : '');
});

function product(i) {
  const r = rng(i * 2654435761);
  const brand = BRANDS[Math.floor(r() * BRANDS.length)];
  const model = `${String.fromCharCode(65 + Math.floor(r() * 26))}${String.fromCharCode(65 + Math.floor(r() * 26))}-${100 + Math.floor(r() * 9900)}`;
  const color = COLORS[Math.floor(r() * COLORS.length)];
  const size = SIZES[Math.floor(r() * SIZES.length)];
  const words = (list, n) => Array.from({ length: n }, () => pick(r, list)).join(' ');
  return {
    sku: `${brand.slice(0, 3).toUpperCase()}-${String(i).padStart(7, '0')}-${color.slice(0, 3).toUpperCase()}`,
    brand,
    model,
    title_en: `${brand} ${model} ${words(EN, 5)} ${size} ${color}`,
    title_zh: `${brand} ${model} ${words(ZH, 4)} ${size}`,
    title_es: `${words(ES, 5)} ${brand} ${model} ${size}`,
    category: `Cat ${Math.floor(r() * 40)}`,
    price: Math.round(500 + r() * 40000) / 100,
  };
}

function* catalog(n, start = 0) {
  for (let i = start; i < start + n; i++) yield product(i);
}

const MAPPING = {
  id: 'sku',
  embed: '{title_en} | {title_zh} | {title_es}',
  rerank: '{title_en}\n{title_zh}\n{title_es}\n{brand}; {sku}; {category}; {price}',
  numeric: ['price'],
  keyword: [
    { template: '{sku} | {brand} | {model}', weight: 4 },
    { template: '{title_en} | {title_zh} | {title_es}', weight: 2 },
    { template: '{category}', weight: 1 },
  ],
};

/** Queries of each kind against a catalog of n products (seeded). */
function queriesFor(n, count) {
  const r = rng(42);
  const kinds = {
    sku: () => product(Math.floor(r() * n)).sku,
    model: () => { const p = product(Math.floor(r() * n)); return `${p.brand} ${p.model}`; },
    english: () => `${pick(r, EN)} ${pick(r, EN)} ${pick(r, EN)}`,
    chinese: () => `${pick(r, ZH)}${pick(r, ZH)}`,
    spanish: () => `${pick(r, ES)} ${pick(r, ES)}`,
  };
  const names = Object.keys(kinds);
  return Array.from({ length: count }, (_, i) => ({ kind: names[i % names.length], text: kinds[names[i % names.length]]() }));
}

// --- measuring ---

const pct = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const stat = (xs) => ({ p50: pct(xs, 0.5), p99: pct(xs, 0.99), mean: xs.reduce((a, b) => a + b, 0) / xs.length });
const dbBytes = (dir, name) => readdirSync(dir).filter((f) => f.startsWith(`${name}.sqlite`)).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
const rssMb = () => process.memoryUsage().rss / 2 ** 20;
const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);

async function ingestRun(em, keyword, n, run) {
  const dir = mkdtempSync(join(tmpdir(), 'qrank-kw-ingest-'));
  try {
    const se = await SearchEngine.open({ dir, embedder: em });
    const col = await se.collection('p', { index: { kind: 'hnsw' } });
    const t = performance.now();
    await col.ingest(catalog(n, run * n), { mapping: keyword ? MAPPING : { ...MAPPING, keyword: false }, batchSize: 256 });
    const s = (performance.now() - t) / 1000;
    await se.close();
    return { keyword_index: keyword, products: n, seconds: s, products_per_s: n / s, sqlite_bytes: dbBytes(dir, 'p') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Writes the store of a collection made before keyword indexes (see the header); returns the seconds taken.
async function writeOldCollection(dir, em, n) {
  const dim = em.info.embeddingLength;
  const index = { kind: 'hnsw', m: 16, efConstruction: 40 };
  const se = await SearchEngine.open({ dir, embedder: em });
  await (await se.collection('p', { index, mapping: { ...MAPPING, keyword: false } })).ingest([]);
  await se.close();
  const t = performance.now();
  const db = new Database(join(dir, 'p.sqlite'));
  const insert = db.prepare('INSERT INTO products (vid, id, fields, embed_texts, rerank_text, embed_hash, indexed_hash) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const vectors = VectorIndex.create({ dim, metric: 'ip', ...index });
  const r = rng(7);
  for (let start = 0; start < n; start += 50_000) {
    const count = Math.min(50_000, n - start);
    db.transaction(() => {
      for (let i = start; i < start + count; i++) {
        const p = toProduct(product(i), MAPPING);
        insert.run(i + 1, p.id, p.fields, p.embed, p.rerank, p.hash, p.hash);
      }
    })();
    const data = new Float32Array(count * dim);
    for (let i = 0; i < count; i++) {
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += (data[i * dim + j] = r() - 0.5) ** 2;
      for (let j = 0; j < dim; j++) data[i * dim + j] /= Math.sqrt(norm);
    }
    await vectors.add(BigInt64Array.from({ length: count }, (_, i) => BigInt(start + i + 1) * 16n), data);
    log(`wrote ${start + count} products and vectors`);
  }
  db.prepare("UPDATE meta SET value = ? WHERE key = 'mapping'").run(JSON.stringify(MAPPING));
  db.exec("DROP TABLE IF EXISTS keywords; DELETE FROM meta WHERE key = 'keywords'");
  db.close();
  await vectors.save(join(dir, 'p.qrix'));
  return (performance.now() - t) / 1000;
}

async function scaleRun(em, n, nq) {
  const dir = mkdtempSync(join(tmpdir(), 'qrank-kw-scale-'));
  try {
    const writeS = await writeOldCollection(dir, em, n);
    let t = performance.now();
    let last = -1;
    const se = await SearchEngine.open({ dir, embedder: em, onKeywordIndexProgress: (_c, p) => { if (p.done - last >= 100_000 || p.done === p.total) log(`keyword index ${(last = p.done)}/${p.total} after ${((performance.now() - t) / 1000).toFixed(0)} s`); } });
    const col = await se.collection('p');
    const openS = (performance.now() - t) / 1000;
    if (col.size !== n || col.pendingCount() !== 0 || !col.hasKeywordIndex) throw new Error(`the written collection did not open as expected: ${JSON.stringify(col.info())}`);
    const queries = queriesFor(n, nq);
    const search = async (recall) => {
      const rows = [];
      for (const q of queries) {
        const r = await se.search('p', q.text, { recall, recallK: 100, topN: 10, rerank: false });
        rows.push({ kind: q.kind, ...r.timings, mode: r.recall, first: r.results[0]?.id });
      }
      return rows;
    };
    // the first pass reads cold pages and term frequencies; the query embeddings are cached after it for every mode
    const cold = await search('hybrid');
    const hybrid = await search('hybrid');
    const keywordOnly = await search('keyword');
    const vectorOnly = await search('vector');
    const byKind = {};
    for (const kind of new Set(queries.map((q) => q.kind))) {
      const h = hybrid.filter((r) => r.kind === kind);
      byKind[kind] = { queries: h.length, keyword_ms: stat(h.map((r) => r.keywordMs)), vector_recall_ms: stat(h.map((r) => r.recallMs)), total_ms: stat(h.map((r) => r.totalMs)) };
    }
    const skuHits = queries.filter((q, i) => q.kind === 'sku' && keywordOnly[i].first === q.text).length;
    t = performance.now();
    const counted = col.info() && (await (async () => { const db = new Database(join(dir, 'p.sqlite'), { readonly: true }); try { return db.prepare('SELECT count(*) AS n FROM keywords').get().n; } finally { db.close(); } })());
    const countMs = performance.now() - t;
    await se.close();
    return {
      products: n,
      write_store_s: writeS,
      open_with_keyword_build_s: openS,
      keyword_build_products_per_s: n / openS,
      keyword_rows: counted,
      count_rows_ms: countMs,
      sqlite_bytes: dbBytes(dir, 'p'),
      queries: nq,
      hybrid: { keyword_ms: stat(hybrid.map((r) => r.keywordMs)), embed_ms: stat(hybrid.map((r) => r.embedMs)), vector_recall_ms: stat(hybrid.map((r) => r.recallMs)), fetch_ms: stat(hybrid.map((r) => r.fetchMs)), total_ms: stat(hybrid.map((r) => r.totalMs)), by_kind: byKind },
      first_pass: { keyword_ms: stat(cold.map((r) => r.keywordMs)), vector_recall_ms: stat(cold.map((r) => r.recallMs)), total_ms: stat(cold.map((r) => r.totalMs)) },
      keyword_only_total_ms: stat(keywordOnly.map((r) => r.totalMs)),
      vector_only_total_ms: stat(vectorOnly.map((r) => r.totalMs)),
      sku_first_in_keyword_recall: `${skuHits}/${queries.filter((q) => q.kind === 'sku').length}`,
      rss_mb: rssMb(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const em = await Embedder.load({ model: opt.embedder, threads: Number(opt.threads) });
try {
  const ingest = [];
  for (let run = 0; run < Number(opt.repeat); run++) {
    for (const keyword of [true, false]) {
      const r = await ingestRun(em, keyword, Number(opt.ingest), run);
      ingest.push(r);
      log(`ingest ${r.products} with${keyword ? '' : 'out'} the keyword index: ${r.products_per_s.toFixed(0)} products/s, ${(r.sqlite_bytes / 2 ** 20).toFixed(1)} MiB`);
    }
  }
  const scale = Number(opt.products) > 0 ? await scaleRun(em, Number(opt.products), Number(opt.queries)) : undefined;
  if (scale) log(JSON.stringify(scale.hybrid.keyword_ms), JSON.stringify(scale.hybrid.vector_recall_ms));
  const report = {
    date: new Date().toISOString(),
    command: `node bench/keyword-bench.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model },
    embedder: { description: em.info.description, dimensions: em.info.embeddingLength, synthetic: em.info.synthetic },
    mapping: MAPPING,
    ingest,
    scale,
  };
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = opt.out || join(root, 'bench', 'results', `keyword-${report.date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${file}`);
} finally {
  await em.close();
}
