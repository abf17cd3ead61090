/**
 * The web page in a real browser: Debian's Chromium driven by playwright-core, against the server
 * on a loopback port with the tiny test models and the shipped demo catalog. It types a query,
 * reads the hits, uses the rerank playground and keeps screenshots in test-results/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_DIR } from '../lib/cli/commands/serve';
import { Embedder, Reranker } from '../lib/index';
import { ensureDemoCollection } from '../lib/search/demo-catalog';
import { SearchEngine } from '../lib/search/engine';
import { createApp } from '../lib/server/app';
import { MODELS, ROOT } from './helpers';

const CHROMIUM = process.env.QRANK_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const shots = join(ROOT, 'test-results');

describe.skipIf(!haveChromium)(`web UI in headless Chromium${haveChromium ? '' : ` (skipped: no browser at ${CHROMIUM}; scripts/setup.sh installs Debian's chromium)`}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'qrank-web-'));
  let rr: Reranker;
  let em: Embedder;
  let se: SearchEngine;
  let http: Server;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    [rr, em] = await Promise.all([Reranker.load({ model: MODELS.reranker, threads: 1 }), Embedder.load({ model: MODELS.embedder, threads: 1 })]);
    se = await SearchEngine.open({ dir, embedder: em, reranker: rr });
    await ensureDemoCollection(se, 'demo');
    http = createApp({ reranker: rr, embedder: em, search: se, staticDir: WEB_DIR, logger: pino({ level: 'silent' }) }).app.listen(0, '127.0.0.1');
    await new Promise((r) => http.once('listening', r));
    base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    // the flags keep Chromium off the network (this machine's closed network refuses it) and out of a sandbox it cannot make as root
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(shots, { recursive: true });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => http?.close(r));
    se?.close();
    await Promise.all([rr?.close(), em?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('searches the demo catalog: hits with language, title, price, category, scores and stage timings', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(base + '/');
    await expect.poll(() => page.locator('#collection').inputValue()).toBe('demo');
    // synthetic models: the page says so
    await page.locator('#synthetic').waitFor({ state: 'visible' });
    expect(await page.locator('#synthetic').textContent()).toMatch(/synthetic/i);

    await page.fill('#query', '无线蓝牙降噪耳机');
    await page.fill('#top-n', '8');
    await page.click('#search-button');
    await page.locator('#results li').nth(7).waitFor();
    const hits = await page.locator('#results li').evaluateAll((items) =>
      items.map((li) => ({
        id: (li as HTMLElement).dataset.id,
        lang: li.querySelector('.lang')?.textContent,
        title: li.querySelector('.hit-title')?.textContent,
        price: li.querySelector('.price')?.textContent,
        category: li.querySelector('.category')?.textContent,
        rerank: li.querySelector('.rerank-score')?.textContent,
        recall: li.querySelector('.recall-score')?.textContent,
        ranks: li.querySelector('.ranks')?.textContent,
      })),
    );
    expect(hits).toHaveLength(8);
    // the same hits as the library's own search, in the same order
    const lib = await se.search('demo', '无线蓝牙降噪耳机', { recallK: 50, topN: 8 });
    expect(hits.map((h) => h.id)).toEqual(lib.results.map((h) => h.id));
    for (const [i, h] of hits.entries()) {
      const f = lib.results[i].fields;
      expect(h.lang).toBe('zh'); // a Chinese query shows the Chinese title
      expect(h.title).toBe(f.title_zh);
      expect(h.price).toContain((f.price as number).toFixed(2));
      expect(h.category).toBe(f.category);
      expect(h.rerank).toBe(`rerank ${lib.results[i].rerankScore!.toFixed(3)}`);
      expect(h.recall).toMatch(/^recall -?\d\.\d{3}$/);
      // the ranks in each list, as the library's explain gives them (hybrid recall by default)
      const e = (await se.search('demo', '无线蓝牙降噪耳机', { recallK: 50, topN: 8, explain: true })).results[i].explain!.recall;
      expect(h.ranks).toBe(`keyword ${e.keywordRank ? `#${e.keywordRank}` : '–'} · vector ${e.vectorRank ? `#${e.vectorRank}` : '–'}`);
    }
    expect(await page.locator('#search-status').textContent()).toMatch(/8 results from 50 candidates \(hybrid recall\) · embed [\d.]+ ms · keyword [\d.]+ ms · vector [\d.]+ ms · fetch [\d.]+ ms · rerank [\d.]+ ms · total [\d.]+ ms/);

    // a Spanish query with a price filter: Spanish titles, no hit above the price
    await page.fill('#query', 'auriculares inalámbricos');
    await page.fill('#max-price', '50');
    await page.click('#search-button');
    await expect.poll(() => page.locator('#results li .lang').first().textContent()).toBe('es');
    const prices = await page.locator('#results li .price').allTextContents();
    expect(prices.length).toBeGreaterThan(0);
    for (const p of prices) expect(Number(p.match(/[\d.]+/)![0])).toBeLessThanOrEqual(50);
    await page.screenshot({ path: join(shots, 'web-search.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it('finds a product by its SKU typed into the search box: first with keyword recall, among the candidates with hybrid', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(base + '/');
    await expect.poll(() => page.locator('#collection').inputValue()).toBe('demo');
    // the synthetic reranker's order means nothing, so the page ranks by recall here
    await page.selectOption('#recall', 'keyword');
    await page.uncheck('#rerank');
    const search = async (query: string) => {
      await page.fill('#query', query);
      await Promise.all([page.waitForResponse((r) => r.url().endsWith('/v1/search')), page.click('#search-button')]);
      await expect.poll(() => page.locator('#search-button').isDisabled()).toBe(false);
    };
    await search('SOQ-17919-BLA');
    expect(await page.locator('#results li').first().getAttribute('data-id')).toBe('p0001');
    const top = page.locator('#results li').first();
    expect(await top.locator('.sku').textContent()).toBe('SOQ-17919-BLA');
    expect(await top.locator('.ranks').textContent()).toBe('keyword #1 · vector –');
    expect(await page.locator('#search-status').textContent()).toMatch(/\(keyword recall\)/);
    // typed without dashes, in lower case, or without the colour: the same product
    for (const q of ['soq17919bla', 'SOQ-17919']) {
      await search(q);
      expect(await page.locator('#results li').first().getAttribute('data-id')).toBe('p0001');
    }
    // hybrid, reranked: the product is among the 50 candidates, keyword rank 1
    await page.selectOption('#recall', 'hybrid');
    await page.check('#rerank');
    await page.fill('#top-n', '50');
    await search('SOQ-17919-BLA');
    expect(await page.locator('#search-status').textContent()).toMatch(/\(hybrid recall\)/);
    expect(await page.locator('#results li[data-id="p0001"] .ranks').textContent()).toMatch(/^keyword #1 · vector (#\d+|–)$/);
    await page.screenshot({ path: join(shots, 'web-sku.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it('reranks in the playground: ranked documents with score bars, as /v1/rerank ranks them', async () => {
    const page = await browser.newPage();
    await page.goto(base + '/');
    await page.click('#tab-rerank');
    await page.locator('#panel-rerank').waitFor({ state: 'visible' });
    expect(await page.locator('#panel-search').isVisible()).toBe(false);
    const docs = ['wireless noise cancelling headphones', '无线蓝牙降噪耳机', 'juego de cuchillos de cocina', 'running shoes, size 42', 'cotton T-shirt'];
    await page.fill('#rr-query', 'auriculares bluetooth');
    await page.fill('#rr-documents', docs.join('\n') + '\n\n');
    await page.click('#rerank-button');
    await page.locator('#ranked li').nth(4).waitFor();
    const ranked = await page.locator('#ranked li').evaluateAll((items) =>
      items.map((li) => ({ doc: li.querySelector('.doc')?.textContent, score: Number(li.querySelector('.relevance')?.textContent), width: (li.querySelector('.bar') as HTMLElement).style.width })),
    );
    const expected = await rr.rerank('auriculares bluetooth', docs);
    expect(ranked.map((r) => r.doc)).toEqual(expected.map((r) => docs[r.index]));
    ranked.forEach((r, i) => {
      expect(r.score).toBeCloseTo(expected[i].score, 4);
      expect(parseFloat(r.width)).toBeCloseTo(expected[i].score * 100, 3);
    });
    expect(await page.locator('#rerank-status').textContent()).toMatch(/^5 documents scored in \d+ ms \(\d+ tokens\)$/);
    await page.screenshot({ path: join(shots, 'web-rerank.png'), fullPage: true });
    await page.close();
  }, 60_000);
});
