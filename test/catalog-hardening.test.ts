/**
 * Hostile catalogs against the record -> product path (issue 10): a bad record is rejected with its
 * line and a reason, the rest is ingested, and nothing is left behind that breaks a later call,
 * a reopen or the server. Rows written by an older qrank (which let bad texts through) are put
 * straight into SQLite to show that the collection heals instead of becoming unopenable.
 */
import { describe, expect, it } from 'vitest';
import { renderTemplate } from '../lib/search/templates';

describe('separator runs in templates (item 6)', () => {
  const timed = (title: string) => {
    const t0 = performance.now();
    const text = renderTemplate('{title} | {brand}', { title, brand: 'B' });
    return { text, ms: performance.now() - t0 };
  };

  it('renders long separator runs in linear time', () => {
    const cases = [
      'phone' + ' | '.repeat(18) + 'x',
      'phone' + ' | '.repeat(5000) + 'x',
      'phone' + ' ,;:|'.repeat(4000) + 'x',
      ' | '.repeat(5000) + 'phone',
      'a' + ' '.repeat(20_000) + '|' + ' '.repeat(20_000) + 'b',
      'a' + '\u3000|'.repeat(5000) + '\u3000;b',
    ];
    for (const title of cases) {
      const { text, ms } = timed(title);
      expect(ms, `${title.slice(0, 20)}... (${title.length} chars)`).toBeLessThan(250);
      expect(text.endsWith(' | B')).toBe(true);
    }
    expect(timed('phone' + ' | '.repeat(5000) + 'x').text).toBe('phone | x | B');
    expect(timed(' | '.repeat(5000) + 'phone').text).toBe('phone | B');
  });

  it('keeps what the separator cleanup did: dangling separators dropped, pipe runs collapsed, other text untouched', () => {
    const f = { a: 'A', b: 'B', c: 'C', e: '' };
    const cases: [string, Record<string, unknown>, string][] = [
      ['{a} | {e} | {b}', f, 'A | B'],
      ['{e} | {a}', f, 'A'],
      ['{a} | {e}', f, 'A'],
      ['{a}, {e}; {e}: ', f, 'A'],
      ['  ; {a} :: {b} ,, ', f, 'A :: B'],
      ['{a} || {b}', f, 'A | B'],
      ['{a} |, | {b}', f, 'A |, | B'],
      ['brand: {e}\n{a}\n{e} | {e}', f, 'A'],
      ['{a}\n\n{b}', f, 'A\nB'],
      ['price: {a}', f, 'price: A'],
      ['{a}\u3000|\u3000\u3000|{b}', f, 'A | B'],
      ['{x.y} / {a}', { x: { y: 'Y' }, a: 'A' }, 'Y / A'],
      ['{n} {t} {o}', { n: 0, t: false, o: { k: [1] } }, '0 false {"k":[1]}'],
    ];
    for (const [template, fields, expected] of cases) expect(renderTemplate(template, fields), template).toBe(expected);
  });

  it('gives what the old regular expressions gave on every short line of separators, spaces and text', () => {
    // the replaced implementation, as an oracle: fine on short inputs, exponential on long ones
    const old = (t: string) => t.replace(/(\s*[|,;:]\s*)+$/g, '').replace(/^(\s*[|,;:]\s*)+/g, '').replace(/(\s*\|\s*){2,}/g, ' | ').trim();
    const alphabet = ['a', ' ', '|', ',', ';', ':', '\u00a0', '\t'];
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16; // the high bits of an LCG
    for (let i = 0; i < 5000; i++) {
      const line = Array.from({ length: next() % 12 }, () => alphabet[next() % alphabet.length]).join('');
      expect(renderTemplate('{v}', { v: line }), JSON.stringify(line)).toBe(old(line));
    }
  });
});
