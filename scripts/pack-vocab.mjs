#!/usr/bin/env node
// Writes vocab/ggml-vocab-qwen2.gguf.br: llama.cpp's Qwen2 vocabulary (the BPE Qwen3 uses), from the
// llama.cpp source qrank builds (deps/, see fetch-llama.mjs), brotli-compressed (5.9 MB -> 0.9 MB).
// The package ships it so that synthetic models (`qrank serve` without models, make-test-model) can
// be generated from an installed package, which has no deps/. Run it again when llama.cpp is bumped;
// test/test-model.test.ts checks that the shipped file is exactly deps/' vocabulary.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants } from 'node:zlib';
import { ensureLlamaSource } from './fetch-llama.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
ensureLlamaSource();
const raw = readFileSync(join(root, 'deps', 'llama.cpp', 'models', 'ggml-vocab-qwen2.gguf'));
const packed = brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_LGWIN]: 24, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length } });
writeFileSync(join(root, 'vocab', 'ggml-vocab-qwen2.gguf.br'), packed);
console.error(`qrank: vocab/ggml-vocab-qwen2.gguf.br: ${raw.length} -> ${packed.length} bytes`);
