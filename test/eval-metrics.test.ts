import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBeir, readCorpus, readQrels, readQueries } from '../lib/eval/beir';
import { evaluate, mrrAtK, ndcgAtK, precisionAtK, recallAtK } from '../lib/eval/metrics';

const root = mkdtempSync(join(tmpdir(), 'qrank-eval-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const judged = (entries: Record<string, number>) => new Map(Object.entries(entries));

/** A fresh BEIR directory under root with the given files (paths relative to it). */
function beirDir(name: string, files: Record<string, string>): string {
  const dir = join(root, name);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  return dir;
}

describe('ndcgAtK', () => {
  it('is 1 for the ideal ordering, whatever follows it', () => {
    const j = judged({ a: 3, b: 2, c: 1, z: 0 });
    expect(ndcgAtK(['a', 'b', 'c'], j, 3)).toBeCloseTo(1, 12);
    expect(ndcgAtK(['a', 'b', 'c', 'unjudged', 'z'], j, 10)).toBeCloseTo(1, 12);
    expect(ndcgAtK(['a', 'b', 'c'], j, 3, 'linear')).toBeCloseTo(1, 12);
  });

  // Judgements a=3, b=2, c=0; ranking b, c, a.
  // Exponential gains 2^g - 1: a=7, b=3, c=0. Discount of rank r: log2(r + 1) -> 1, log2 3, 2.
  //   DCG@3  = 3/1 + 0/log2(3) + 7/2        = 6.5
  //   IDCG@3 = 7/1 + 3/log2(3) + 0/2        = 7 + 1.8927892607143724 = 8.8927892607143724
  //   nDCG@3 = 6.5 / 8.8927892607143724     = 0.7309292742059024
  //   DCG@2  = 3/1 + 0/log2(3)              = 3
  //   IDCG@2 = 7/1 + 3/log2(3)              = 8.8927892607143724 (c has gain 0 anyway)
  //   nDCG@2 = 3 / 8.8927892607143724       = 0.3373519727104165
  const graded = judged({ a: 3, b: 2, c: 0 });
  const order = ['b', 'c', 'a'];

  it('matches the hand-computed graded case (exponential gain)', () => {
    expect(Math.abs(ndcgAtK(order, graded, 3) - 0.7309292742059024)).toBeLessThan(1e-9);
    expect(Math.abs(ndcgAtK(order, graded, 2) - 0.3373519727104165)).toBeLessThan(1e-9);
    expect(ndcgAtK(order, graded, 3)).toBeCloseTo(6.5 / (7 + 3 / Math.log2(3)), 12);
  });

  // Linear gains (trec_eval / pytrec_eval): a=3, b=2, c=0.
  //   DCG@3 = 2 + 0 + 3/2 = 3.5;  IDCG@3 = 3 + 2/log2(3) = 4.2618595071429148  -> 0.8212377705398237
  //   DCG@2 = 2;                  IDCG@2 = 4.2618595071429148                   -> 0.46927872602275644
  it('matches the hand-computed graded case (linear gain)', () => {
    expect(Math.abs(ndcgAtK(order, graded, 3, 'linear') - 0.8212377705398237)).toBeLessThan(1e-9);
    expect(Math.abs(ndcgAtK(order, graded, 2, 'linear') - 0.46927872602275644)).toBeLessThan(1e-9);
  });

  it('is 0 without a positive judgement, and for a ranking that finds nothing', () => {
    expect(ndcgAtK(['a'], judged({ a: 0, b: 0 }), 10)).toBe(0);
    expect(ndcgAtK(['a'], new Map(), 10)).toBe(0);
    expect(ndcgAtK([], graded, 10)).toBe(0);
    expect(ndcgAtK(['x', 'y'], graded, 10)).toBe(0);
  });

  it('counts a repeated doc once, at its first position', () => {
    // Only b (gain 3) is found, at rank 1; its repeat adds nothing: 3 / (7 + 3/log2(3)).
    expect(ndcgAtK(['b', 'b', 'b'], graded, 3)).toBeCloseTo(3 / (7 + 3 / Math.log2(3)), 12);
  });

  it('rejects a cutoff that is not a positive integer', () => {
    expect(() => ndcgAtK(order, graded, 0)).toThrow(/k must be a positive integer/);
    expect(() => ndcgAtK(order, graded, 2.5)).toThrow(/k must be a positive integer/);
  });
});

describe('mrrAtK', () => {
  const j = judged({ r1: 1, r2: 2, n: 0 });

  it('is 1/3 when the first relevant doc is at rank 3', () => {
    // Ranks: 1 n (grade 0), 2 unjudged, 3 r1 (grade 1) -> 1/3.
    expect(mrrAtK(['n', 'u', 'r1', 'r2'], j, 10)).toBeCloseTo(1 / 3, 12);
  });

  it('is 0 when the first relevant doc lies beyond k', () => {
    expect(mrrAtK(['n', 'u', 'r1'], j, 2)).toBe(0);
  });

  it('honours minGrade', () => {
    // With minGrade 2 only r2 counts; it is at rank 4 -> 1/4.
    expect(mrrAtK(['n', 'u', 'r1', 'r2'], j, 10, 2)).toBeCloseTo(0.25, 12);
    expect(() => mrrAtK(['n'], j, 10, 0)).toThrow(/minGrade/);
  });
});

describe('recallAtK and precisionAtK', () => {
  // Four relevant docs (grade >= 1): r1..r4. Ranking: r1, x, r2, n, r3, r4.
  const j = judged({ r1: 1, r2: 2, r3: 1, r4: 3, n: 0 });
  const ranking = ['r1', 'x', 'r2', 'n', 'r3', 'r4'];

  it('computes partial recall', () => {
    expect(recallAtK(ranking, j, 1)).toBeCloseTo(1 / 4, 12); // r1
    expect(recallAtK(ranking, j, 5)).toBeCloseTo(3 / 4, 12); // r1, r2, r3
    expect(recallAtK(ranking, j, 100)).toBe(1);
    // minGrade 2: relevant are r2, r4; top 5 has r2 -> 1/2.
    expect(recallAtK(ranking, j, 5, 2)).toBeCloseTo(1 / 2, 12);
  });

  it('is NaN (undefined) for a query with nothing relevant', () => {
    expect(recallAtK(['n'], judged({ n: 0 }), 10)).toBeNaN();
  });

  it('computes precision over k, even when fewer docs were ranked', () => {
    expect(precisionAtK(ranking, j, 5)).toBeCloseTo(3 / 5, 12);
    expect(precisionAtK(['r1', 'r2'], j, 10)).toBeCloseTo(2 / 10, 12);
    expect(precisionAtK(['r1', 'r1'], j, 2)).toBeCloseTo(1 / 2, 12); // the repeat is not a second hit
  });
});

describe('evaluate', () => {
  // q1: d1=1, d2=1; ranked d1, x, d2.    q2: d5=2 (gain 3); ranked x, d5.
  //
  // q1 nDCG@1 = 1/1 = 1;  nDCG@3 = (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309297535714575
  //    MRR@1 = MRR@3 = 1;  Recall@1 = 1/2, Recall@3 = 1;  P@1 = 1, P@3 = 2/3
  // q2 nDCG@1 = 0;  nDCG@3 = (3/log2(3)) / (3/1) = 1/log2(3) = 0.6309297535714575
  //    MRR@1 = 0, MRR@3 = 1/2;  Recall@1 = 0, Recall@3 = 1;  P@1 = 0, P@3 = 1/3
  const qrels = new Map([
    ['q1', judged({ d1: 1, d2: 1 })],
    ['q2', judged({ d5: 2 })],
  ]);
  const run = new Map([
    ['q1', ['d1', 'x', 'd2']],
    ['q2', ['x', 'd5']],
  ]);
  const q1ndcg3 = 1.5 / (1 + 1 / Math.log2(3));
  const q2ndcg3 = 1 / Math.log2(3);

  it('scores and averages two queries', () => {
    const res = evaluate(run, qrels, { ks: [3, 1] });
    expect(res.queries).toBe(2);
    expect(Object.keys(res.mean)).toEqual(['nDCG@1', 'nDCG@3', 'MRR@1', 'MRR@3', 'Recall@1', 'Recall@3', 'P@1', 'P@3']);
    expect(res.perQuery.q1['nDCG@3']).toBeCloseTo(q1ndcg3, 12);
    expect(res.perQuery.q2['nDCG@3']).toBeCloseTo(0.6309297535714575, 12);
    expect(res.perQuery.q2['MRR@3']).toBe(0.5);
    expect(res.mean['nDCG@1']).toBeCloseTo(0.5, 12);
    expect(res.mean['nDCG@3']).toBeCloseTo((q1ndcg3 + q2ndcg3) / 2, 12);
    expect(res.mean['MRR@1']).toBeCloseTo(0.5, 12);
    expect(res.mean['MRR@3']).toBeCloseTo(0.75, 12);
    expect(res.mean['Recall@1']).toBeCloseTo(0.25, 12);
    expect(res.mean['Recall@3']).toBeCloseTo(1, 12);
    expect(res.mean['P@1']).toBeCloseTo(0.5, 12);
    expect(res.mean['P@3']).toBeCloseTo((2 / 3 + 1 / 3) / 2, 12);
  });

  it('skips queries without a positive judgement, and scores a judged query missing from the run as 0', () => {
    const withExtras = new Map([...qrels, ['q3', judged({ d9: 0 })], ['q4', judged({ d7: 1 })]]);
    const runExtras = new Map([...run, ['q3', ['d9']], ['unjudged', ['d1']]]);
    const res = evaluate(runExtras, withExtras, { ks: [1, 3] });
    // q3 (only grade 0) and 'unjudged' are not evaluated; q4 is, with an empty ranking.
    expect(res.queries).toBe(3);
    expect(Object.keys(res.perQuery).sort()).toEqual(['q1', 'q2', 'q4']);
    expect(res.perQuery.q4['nDCG@3']).toBe(0);
    expect(res.mean['nDCG@3']).toBeCloseTo((q1ndcg3 + q2ndcg3 + 0) / 3, 12);
    expect(res.mean['MRR@3']).toBeCloseTo((1 + 0.5 + 0) / 3, 12);
  });

  it('reports NaN means when no query qualifies', () => {
    const res = evaluate(new Map(), new Map([['q', judged({ d: 0 })]]), { ks: [10] });
    expect(res.queries).toBe(0);
    expect(res.mean['nDCG@10']).toBeNaN();
  });

  it('rejects an empty list of cutoffs', () => {
    expect(() => evaluate(run, qrels, { ks: [] })).toThrow(/at least one cutoff/);
  });
});

describe('BEIR loader', () => {
  it('round-trips corpus, queries and qrels', async () => {
    const dir = beirDir('roundtrip', {
      // A BOM, a blank line and a CRLF line ending, as real exports sometimes have.
      'corpus.jsonl':
        '\uFEFF{"_id": "d1", "title": "Title 1", "text": "Text 1", "metadata": {"url": "u1"}}\n' +
        '\n' +
        '{"_id": "d2", "text": "Text 2 é 東京"}\r\n' +
        '{"_id": 3, "title": null, "text": "numeric id"}\n',
      'queries.jsonl': '{"_id": "q1", "text": "first?"}\n{"_id": "q2", "text": "second?", "metadata": {"lang": "fr"}}\n',
      'qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td2\t1\n',
      'qrels/dev.tsv': 'query-id\tcorpus-id\tscore\nq2\t3\t1\n',
    });
    const data = await loadBeir(dir);
    expect(data.corpus).toEqual([
      { id: 'd1', title: 'Title 1', text: 'Text 1', metadata: { url: 'u1' } },
      { id: 'd2', title: '', text: 'Text 2 é 東京', metadata: {} },
      { id: '3', title: '', text: 'numeric id', metadata: {} },
    ]);
    expect(data.queries).toEqual([
      { id: 'q1', text: 'first?', metadata: {} },
      { id: 'q2', text: 'second?', metadata: { lang: 'fr' } },
    ]);
    expect(data.qrels).toEqual(
      new Map([
        ['q1', new Map([['d1', 2], ['d2', 0]])],
        ['q2', new Map([['d2', 1]])],
      ]),
    );
    expect(await readQrels(dir, 'dev')).toEqual(new Map([['q2', new Map([['3', 1]])]]));
  });

  it('names the file and line of a malformed JSON line', async () => {
    const dir = beirDir('bad-json', {
      // Line 2 is blank but still counted, so the broken line is line 3.
      'corpus.jsonl': '{"_id": "d1", "text": "ok"}\n\n{"_id": "d2", "text": \n',
      'queries.jsonl': '{"_id": "q1", "text": "ok"}\n["not", "an", "object"]\n',
    });
    const drain = async () => {
      for await (const _ of readCorpus(dir));
    };
    await expect(drain()).rejects.toThrow(/corpus\.jsonl:3: invalid JSON/);
    await expect(drain()).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(readQueries(dir)).rejects.toThrow(/queries\.jsonl:2: expected a JSON object/);
  });

  it('rejects documents and queries with missing or mistyped fields', async () => {
    const dir = beirDir('bad-fields', {
      'corpus.jsonl': '{"_id": "d1", "text": 5}\n',
      'queries.jsonl': '{"_id": "q1"}\n',
    });
    const drain = async () => {
      for await (const _ of readCorpus(dir));
    };
    await expect(drain()).rejects.toThrow(/corpus\.jsonl:1: "text" must be a string/);
    await expect(readQueries(dir)).rejects.toThrow(/queries\.jsonl:1: missing or invalid "text"/);
  });

  it('names the line of a malformed qrels row', async () => {
    const twoCols = beirDir('bad-qrels-cols', { 'qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d2 1\n' });
    await expect(readQrels(twoCols)).rejects.toThrow(/test\.tsv:3: expected 3 tab-separated columns, got 1/);
    const fractional = beirDir('bad-qrels-score', { 'qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq1\td2\t0.5\n' });
    await expect(readQrels(fractional)).rejects.toThrow(/test\.tsv:4: score must be an integer, got "0\.5"/);
  });

  it('fails on a missing file', async () => {
    await expect(readQueries(join(root, 'does-not-exist'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('streams a large corpus through the async generator', async () => {
    const n = 20_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(JSON.stringify({ _id: `doc${i}`, title: `t${i}`, text: `passage ${i} — naïve café 東京` }));
    const dir = beirDir('large', { 'corpus.jsonl': `${lines.join('\n')}\n` });
    // Many read-stream chunks (64 KiB each), so lines and multi-byte characters straddle chunk edges.
    expect(statSync(join(dir, 'corpus.jsonl')).size).toBeGreaterThan(10 * 64 * 1024);

    let count = 0;
    let last = '';
    for await (const doc of readCorpus(dir)) {
      if (doc.text !== `passage ${count} — naïve café 東京`) throw new Error(`bad doc ${doc.id}: ${doc.text}`);
      last = doc.id;
      count++;
    }
    expect(count).toBe(n);
    expect(last).toBe(`doc${n - 1}`);

    // An early break releases the file instead of reading on.
    const first: string[] = [];
    for await (const doc of readCorpus(dir)) {
      first.push(doc.id);
      if (first.length === 3) break;
    }
    expect(first).toEqual(['doc0', 'doc1', 'doc2']);
  });
});
