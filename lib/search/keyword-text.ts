/**
 * How text becomes keyword terms, the same way for products and for queries, so the keyword index
 * (FTS5, see keyword-index.ts) only ever sees terms made here.
 *
 * - Normalisation: NFKC (full-width letters and digits become ASCII, "ﬁ" becomes "fi"), lower case,
 *   and the Latin combining accents (U+0300-U+036F) removed: "Cancelación" -> "cancelacion". Other
 *   marks stay: Japanese dakuten (が is not か) and Hangul syllables are untouched.
 * - Scripts without spaces (Han, Hiragana, Katakana; Hangul, whose words carry attached particles):
 *   each run gives its overlapping bigrams ("降噪耳机" -> 降噪 噪耳 耳机), so "降噪耳机" finds
 *   "无线降噪耳机" without a dictionary. Products also get each character alone, so a one-character
 *   query ("鞋") still matches; a query gets a character alone only when its run is one character.
 * - Other letters and digits: words, where `-` `.` `/` `_` `'` (and `,` between digits) inside a
 *   word join its pieces, and pieces also split where letters meet digits. A word gives its whole
 *   form without joiners and every run of up to MAX_SPAN consecutive pieces: "WH-1000XM5" -> wh1000xm5,
 *   wh, 1000, xm, 5, wh1000, 1000xm, xm5, wh1000xm, 1000xm5 (so "WH1000XM5", "1000XM5" and
 *   "wh-1000xm5" meet it), "3,5 mm" and "3.5mm" both give 35, "Wi-Fi" gives wifi. A word of more than
 *   MAX_PIECES pieces gives its whole form and its pieces only (bounded work for any input).
 * - No stemming and no stop words: the catalog is multilingual, and BM25's IDF discounts common terms.
 *
 * Every term is letters, digits and marks only (`TERM`), so a term quoted in an FTS5 query is always
 * a plain string: no user text reaches FTS5 as query syntax (quotes, AND/OR/NOT/NEAR, `*`, `^`,
 * `column:`, parentheses are separators here). A query keeps its first MAX_QUERY_TERMS distinct terms
 * from its first MAX_QUERY_CHARS characters.
 */

/** Consecutive pieces joined into one term at most (see the header). */
export const MAX_SPAN = 4;
/** Pieces of one word beyond which only the whole word and its pieces are terms. */
export const MAX_PIECES = 16;
/** Distinct terms of one query at most; the rest are ignored. */
export const MAX_QUERY_TERMS = 64;
/** Characters of a query read for its terms; the rest are ignored (a query is a few words). */
export const MAX_QUERY_CHARS = 4096;

/** What a term is made of: what FTS5's unicode61 tokenizer (categories L* N* Co M*) keeps whole. */
export const TERM = /^[\p{L}\p{N}\p{M}]+$/u;

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\u3005\u30fc\uff70]/u;
const HANGUL = /\p{Script=Hangul}/u;
const WORD_CHAR = /[\p{L}\p{N}\p{M}]/u;
const JOINER = /^[-./_'\u2019]$/;
const LATIN_ACCENTS = /[\u0300-\u036f]/g;
/** A word's pieces: letters (with their marks) or digits. */
const PIECE = /[\p{L}\p{M}]+|\p{N}+/gu;

type Kind = 'cjk' | 'hangul' | 'word' | 'other';

/** NFKC, lower case, Latin accents removed (see the header). */
export function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase().normalize('NFD').replace(LATIN_ACCENTS, '').normalize('NFC');
}

function kindOf(ch: string): Kind {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ? 'word' : 'other'; // ASCII, the common case
  if (CJK.test(ch)) return 'cjk';
  if (HANGUL.test(ch)) return 'hangul';
  return WORD_CHAR.test(ch) ? 'word' : 'other';
}

/** The runs of one kind in normalised text: CJK runs, Hangul runs, and words (joiners inside them kept). */
function runs(text: string): { kind: Kind; text: string }[] {
  const chars = [...text];
  const out: { kind: Kind; text: string }[] = [];
  let i = 0;
  while (i < chars.length) {
    const kind = kindOf(chars[i]);
    if (kind === 'other') {
      i++;
      continue;
    }
    let j = i + 1;
    for (;;) {
      if (j < chars.length && kindOf(chars[j]) === kind) j++;
      else if (kind === 'word' && isJoiner(chars, j)) j += 2;
      else break;
    }
    out.push({ kind, text: chars.slice(i, j).join('') });
    i = j;
  }
  return out;
}

// a joiner between two word characters (a comma only between two digits)
function isJoiner(chars: string[], at: number): boolean {
  const c = chars[at];
  const next = chars[at + 1];
  if (next === undefined || kindOf(next) !== 'word') return false;
  if (c === ',') return /\p{N}/u.test(chars[at - 1]) && /\p{N}/u.test(next);
  return JOINER.test(c ?? '');
}

function cjkTerms(run: string, side: 'document' | 'query', out: string[]): void {
  const chars = [...run];
  if (chars.length === 1 || side === 'document') for (const c of chars) out.push(c);
  for (let i = 0; i + 1 < chars.length; i++) out.push(chars[i] + chars[i + 1]);
}

function wordTerms(word: string, out: string[]): void {
  const pieces = word.match(PIECE) ?? [];
  out.push(pieces.join(''));
  if (pieces.length === 1) return;
  const span = pieces.length > MAX_PIECES ? 1 : Math.min(MAX_SPAN, pieces.length - 1);
  for (let len = 1; len <= span; len++) {
    for (let i = 0; i + len <= pieces.length; i++) out.push(pieces.slice(i, i + len).join(''));
  }
}

/** The terms of a text, in order, repeats kept (a product's term frequencies count for BM25). */
export function keywordTerms(text: string, side: 'document' | 'query' = 'document'): string[] {
  const out: string[] = [];
  for (const r of runs(normalise(text))) {
    if (r.kind === 'word') wordTerms(r.text, out);
    else cjkTerms(r.text, side, out);
  }
  return out.filter((t) => TERM.test(t));
}

/** A query's distinct terms: at most MAX_QUERY_TERMS, the first ones, from its first MAX_QUERY_CHARS characters. */
export function queryTerms(query: string): string[] {
  return [...new Set(keywordTerms(query.slice(0, MAX_QUERY_CHARS), 'query'))].slice(0, MAX_QUERY_TERMS);
}

/**
 * The FTS5 MATCH expression for terms from queryTerms: each term quoted, joined by OR, so BM25 ranks
 * products by how many of the terms they hold and how rare those are. undefined for no terms.
 */
export function matchExpression(terms: string[]): string | undefined {
  const safe = terms.filter((t) => TERM.test(t));
  return safe.length ? safe.map((t) => `"${t}"`).join(' OR ') : undefined;
}
