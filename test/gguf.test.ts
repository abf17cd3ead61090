import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GGMLType,
  GGUFValue,
  GGUFValueType,
  bf16BitsToF32,
  decodeTensorData,
  encodeTensorData,
  f16BitsToF32,
  f32Bits,
  f32FromBits,
  f32ToBf16Bits,
  f32ToF16Bits,
  bf16BitsFromF32Bits,
  tensorByteSize,
} from '../lib/gguf/format';
import { GGUFFile, withGGUF } from '../lib/gguf/reader';
import { GGUFWriter, writeGGUF } from '../lib/gguf/writer';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qrank-gguf-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
const tmp = (name: string) => path.join(dir, name);

describe('f16 conversion', () => {
  it.each([
    [1.0, 0x3c00],
    [-2.0, 0xc000],
    [0.5, 0x3800],
    [0.1, 0x2e66],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // just below the rounding midpoint to Inf
    [65520, 0x7c00], // the midpoint rounds (to even) to Inf
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [0, 0x0000],
    [-0, 0x8000],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -25, 0x0000], // half the smallest subnormal: tie, rounds to even (0)
    [1.5 * 2 ** -25, 0x0001], // above the tie: rounds up
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal ulps: even (2)
    [5 * 2 ** -25, 0x0002], // tie between 2 and 3: even (2)
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [2047.5, 0x6800], // 2047.5 is not representable: tie between 2047 and 2048 -> even mantissa (2048)
  ])('%d -> %s', (x, bits) => {
    expect(f32ToF16Bits(x)).toBe(bits);
  });

  it('keeps NaN a NaN', () => {
    const h = f32ToF16Bits(NaN);
    expect(h & 0x7c00).toBe(0x7c00);
    expect(h & 0x3ff).not.toBe(0);
    expect(f16BitsToF32(h)).toBeNaN();
  });

  it('decodes known patterns', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x3555)).toBe(0.333251953125);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x8000)).toBe(-0);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
  });

  it('round-trips every finite f16 value exactly', () => {
    const mismatches: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) !== 0x7c00 && f32ToF16Bits(f16BitsToF32(h)) !== h) mismatches.push(h);
    }
    expect(mismatches).toEqual([]);
  });

  it('bulk encoding matches the scalar conversion', () => {
    const xs = new Float32Array([1, -0, 65520, 2 ** -25, 3 * 2 ** -25, 0.1, -1e-3, 123.456]);
    const bulk = new Uint16Array(encodeTensorData(GGMLType.F16, xs).slice().buffer);
    expect([...bulk]).toEqual([...xs].map(f32ToF16Bits));
    const back = decodeTensorData(GGMLType.F16, encodeTensorData(GGMLType.F16, xs), xs.length);
    expect(back[0]).toBe(1);
    expect(back[2]).toBe(Infinity);
    expect(back[5]).toBe(f16BitsToF32(0x2e66));
  });
});

describe('bf16 conversion', () => {
  it.each([
    [1.0, 0x3f80],
    [-2.0, 0xc000],
    [3.0, 0x4040],
    [0, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7f80],
    [1 + 2 ** -8, 0x3f80], // tie: even
    [1 + 3 * 2 ** -8, 0x3f82], // tie: even
    [1 + 2 ** -8 + 2 ** -20, 0x3f81], // above the tie
    [3.4028234663852886e38, 0x7f80], // FLT_MAX rounds up to Inf, as in ggml
  ])('%d -> %s', (x, bits) => {
    expect(f32ToBf16Bits(x)).toBe(bits);
  });

  it('matches ggml for NaN and subnormals', () => {
    expect(bf16BitsFromF32Bits(0x7f800001)).toBe(0x7fc0); // signalling NaN becomes quiet
    expect(bf16BitsFromF32Bits(0xffc00000)).toBe(0xffc0);
    expect(bf16BitsFromF32Bits(0x00010000)).toBe(0x0001); // subnormals are not flushed
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x0001)).toBe(f32FromBits(0x00010000));
  });

  it('bulk encoding matches the scalar conversion', () => {
    const xs = new Float32Array([1, -0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1, -7.25e-20]);
    const bulk = new Uint16Array(encodeTensorData(GGMLType.BF16, xs).slice().buffer);
    expect([...bulk]).toEqual([...xs].map(f32ToBf16Bits));
    expect(decodeTensorData(GGMLType.BF16, encodeTensorData(GGMLType.BF16, xs), xs.length)[3]).toBe(1 + 2 ** -6);
  });
});

describe('Q8_0', () => {
  it('encodes blocks like ggml (d = amax/127 as f16, q = roundf(x/d))', () => {
    const xs = new Float32Array(64);
    xs.set([127, 0.5, -0.5, 2.5, -2.5, -127, 3.49], 0); // d = 1: q = roundf(x), halves away from zero
    xs.fill(0, 32); // an all-zero block: d = 0
    const bytes = encodeTensorData(GGMLType.Q8_0, xs);
    expect(bytes.length).toBe(2 * 34);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint16(0, true)).toBe(0x3c00);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((j) => view.getInt8(2 + j))).toEqual([127, 1, -1, 3, -3, -127, 3, 0]);
    expect(view.getUint16(34, true)).toBe(0);
    expect([...bytes.subarray(36, 68)].every((b) => b === 0)).toBe(true);
  });

  it('round-trips within half a quantisation step (plus the f16 rounding of d)', () => {
    const xs = Float32Array.from({ length: 96 }, (_, i) => Math.sin(i * 0.7) * (1 + (i >> 5)));
    const back = decodeTensorData(GGMLType.Q8_0, encodeTensorData(GGMLType.Q8_0, xs), xs.length);
    for (let b = 0; b < 3; b++) {
      const block = xs.subarray(b * 32, b * 32 + 32);
      const d = Math.max(...block.map(Math.abs)) / 127;
      for (let j = 0; j < 32; j++) expect(Math.abs(back[b * 32 + j] - block[j])).toBeLessThanOrEqual(d * 0.57);
    }
  });

  it('rejects partial blocks', () => {
    expect(() => encodeTensorData(GGMLType.Q8_0, new Float32Array(31))).toThrow(/multiple of 32/);
    expect(() => tensorByteSize(GGMLType.Q8_0, [48, 2])).toThrow(/block size/);
    expect(tensorByteSize(GGMLType.Q8_0, [64, 3])).toBe(6 * 34);
  });
});

/** One value of every type, plus arrays of each item type, an empty array and a nested array. */
function everyValueType(): [string, GGUFValue][] {
  const T = GGUFValueType;
  return [
    ['t.u8', { type: T.UINT8, value: 255 }],
    ['t.i8', { type: T.INT8, value: -128 }],
    ['t.u16', { type: T.UINT16, value: 65535 }],
    ['t.i16', { type: T.INT16, value: -32768 }],
    ['t.u32', { type: T.UINT32, value: 4294967295 }],
    ['t.i32', { type: T.INT32, value: -2147483648 }],
    ['t.f32', { type: T.FLOAT32, value: 0.25 }],
    ['t.f64', { type: T.FLOAT64, value: Math.PI }],
    ['t.u64', { type: T.UINT64, value: 18446744073709551615n }],
    ['t.i64', { type: T.INT64, value: -9223372036854775808n }],
    ['t.bool.true', { type: T.BOOL, value: true }],
    ['t.bool.false', { type: T.BOOL, value: false }],
    ['t.str', { type: T.STRING, value: 'héllo wörld ✓ 日本 🙂' }],
    ['t.str.empty', { type: T.STRING, value: '' }],
    ['t.arr.u8', { type: T.ARRAY, itemType: T.UINT8, value: new Uint8Array([0, 1, 255]) }],
    ['t.arr.i8', { type: T.ARRAY, itemType: T.INT8, value: new Int8Array([-128, 0, 127]) }],
    ['t.arr.u16', { type: T.ARRAY, itemType: T.UINT16, value: new Uint16Array([1, 65535]) }],
    ['t.arr.i16', { type: T.ARRAY, itemType: T.INT16, value: new Int16Array([-32768, 32767]) }],
    ['t.arr.u32', { type: T.ARRAY, itemType: T.UINT32, value: [0, 4294967295] }], // plain array input
    ['t.arr.i32', { type: T.ARRAY, itemType: T.INT32, value: new Int32Array([-1, 1, 151936]) }],
    ['t.arr.f32', { type: T.ARRAY, itemType: T.FLOAT32, value: new Float32Array([1.5, -0.125]) }],
    ['t.arr.f64', { type: T.ARRAY, itemType: T.FLOAT64, value: new Float64Array([Math.E]) }],
    ['t.arr.u64', { type: T.ARRAY, itemType: T.UINT64, value: new BigUint64Array([2n ** 63n]) }],
    ['t.arr.i64', { type: T.ARRAY, itemType: T.INT64, value: new BigInt64Array([-5n]) }],
    ['t.arr.bool', { type: T.ARRAY, itemType: T.BOOL, value: [true, false, true] }],
    ['t.arr.str', { type: T.ARRAY, itemType: T.STRING, value: ['yes', 'no', '', 'Ġthe'] }],
    ['t.arr.empty', { type: T.ARRAY, itemType: T.STRING, value: [] }],
    [
      't.arr.nested',
      {
        type: T.ARRAY,
        itemType: T.ARRAY,
        value: [
          { type: T.ARRAY, itemType: T.INT32, value: new Int32Array([1, 2]) },
          { type: T.ARRAY, itemType: T.STRING, value: ['x'] },
        ],
      },
    ],
  ];
}

/** Normalises typed arrays to plain arrays so that written and read values compare structurally. */
function plain(v: unknown): unknown {
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<unknown>);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

describe('GGUF write -> read round trip', () => {
  const f32Data = Float32Array.from({ length: 15 }, (_, i) => i * 0.5 - 3);
  const f16Data = new Float32Array([1, 0.1, -2, 65504, 2 ** -24, -0, 0.333, 7]);
  const q8Data = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i));
  const rawI32 = new Int32Array([1, -2, 3]);
  let file: GGUFFile;
  let written: ReturnType<typeof writeGGUF>;
  const p = () => tmp('roundtrip.gguf');

  beforeAll(() => {
    written = writeGGUF(p(), everyValueType(), [
      { name: 'a.f32', dims: [5, 3], type: GGMLType.F32, data: f32Data },
      { name: 'b.f16', dims: [8], type: GGMLType.F16, data: f16Data },
      { name: 'c.bf16', dims: [8], type: GGMLType.BF16, data: f16Data },
      { name: 'd.q8_0', dims: [32, 2], type: GGMLType.Q8_0, data: q8Data },
      { name: 'e.i32', dims: [3], type: GGMLType.I32, data: new Uint8Array(rawI32.buffer) },
      { name: 'f.empty', dims: [0], type: GGMLType.F32, data: new Float32Array(0) },
    ]);
    file = GGUFFile.open(p());
  });
  afterAll(() => file?.close());

  it('reports the file size and its sha256', () => {
    const bytes = fs.readFileSync(p());
    expect(written.bytes).toBe(bytes.length);
    expect(written.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(fs.readdirSync(dir).some((f) => f.includes('.partial'))).toBe(false);
  });

  it('reads back every metadata value with its type, in order', () => {
    const expected = everyValueType();
    expect([...file.metadata.keys()]).toEqual(expected.map(([k]) => k));
    for (const [key, value] of expected) expect(plain(file.get(key)), key).toEqual(plain(value));
    expect(file.get('t.arr.i32')?.value).toBeInstanceOf(Int32Array);
    expect(file.getNumber('t.u64')).toBe(2 ** 64);
    expect(file.getString('t.str')).toBe('héllo wörld ✓ 日本 🙂');
    expect(file.getBool('t.bool.true')).toBe(true);
  });

  it('reads back tensor infos and data', () => {
    expect(file.version).toBe(3);
    expect(file.tensors.map((t) => [t.name, t.dims, t.type, t.nBytes])).toEqual([
      ['a.f32', [5, 3], GGMLType.F32, 60],
      ['b.f16', [8], GGMLType.F16, 16],
      ['c.bf16', [8], GGMLType.BF16, 16],
      ['d.q8_0', [32, 2], GGMLType.Q8_0, 68],
      ['e.i32', [3], GGMLType.I32, 12],
      ['f.empty', [0], GGMLType.F32, 0],
    ]);
    expect([...file.readTensorF32('a.f32')]).toEqual([...f32Data]);
    expect([...file.readTensorF32('b.f16')]).toEqual([...f16Data].map((x) => f16BitsToF32(f32ToF16Bits(x))));
    expect([...file.readTensorF32('c.bf16')]).toEqual([...f16Data].map((x) => bf16BitsToF32(f32ToBf16Bits(x))));
    expect(Buffer.compare(file.readTensorBytes('d.q8_0'), Buffer.from(encodeTensorData(GGMLType.Q8_0, q8Data)))).toBe(0);
    expect([...new Int32Array(new Uint8Array(file.readTensorBytes('e.i32')).buffer)]).toEqual([1, -2, 3]);
    expect(file.readTensorBytes('f.empty').length).toBe(0);
    expect([...file.readTensorRowsF32('a.f32', 1, 2)]).toEqual([...f32Data.subarray(5, 15)]);
    expect(() => file.readTensorRows('a.f32', 2, 2)).toThrow(/out of range/);
    expect(() => file.readTensorBytes('nope')).toThrow(/no tensor named 'nope'/);
  });

  it('aligns the data section and every tensor to 32 bytes, zero-padded', () => {
    expect(file.alignment).toBe(32);
    expect(file.dataOffset % 32).toBe(0);
    const bytes = fs.readFileSync(p());
    let expectedOffset = 0;
    for (const t of file.tensors) {
      expect(t.offset).toBe(expectedOffset);
      expect(t.fileOffset % 32).toBe(0);
      expectedOffset = Math.ceil((t.offset + t.nBytes) / 32) * 32;
      const pad = bytes.subarray(t.fileOffset + t.nBytes, file.dataOffset + expectedOffset);
      expect(pad.every((b) => b === 0)).toBe(true);
    }
    expect(bytes.length).toBe(file.dataOffset + expectedOffset);
  });
});

describe('GGUF layout', () => {
  it('writes exactly the bytes of the GGUF v3 spec', () => {
    const p = tmp('exact.gguf');
    writeGGUF(p, [['k', { type: GGUFValueType.UINT32, value: 7 }]], [
      { name: 'w', dims: [2], type: GGMLType.F32, data: new Float32Array([1, -2]) },
    ]);
    const u64 = (n: number) => [n, 0, 0, 0, 0, 0, 0, 0];
    const header = [
      ...Buffer.from('GGUF'),
      3, 0, 0, 0, // version
      ...u64(1), // tensor count
      ...u64(1), // kv count
      ...u64(1), ...Buffer.from('k'), 4, 0, 0, 0, 7, 0, 0, 0, // "k": u32 7
      ...u64(1), ...Buffer.from('w'), 1, 0, 0, 0, ...u64(2), 0, 0, 0, 0, ...u64(0), // "w": 1 dim [2], F32, offset 0
    ];
    const padded = [...header, ...new Array(96 - header.length).fill(0)]; // 74 header bytes, padded to 96
    const data = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, ...new Array(24).fill(0)];
    expect([...fs.readFileSync(p)]).toEqual([...padded, ...data]);
  });

  it('honours a custom alignment and records it as general.alignment', () => {
    const p = tmp('align64.gguf');
    writeGGUF(
      p,
      [],
      [
        { name: 'a', dims: [3], type: GGMLType.F32, data: new Float32Array(3) },
        { name: 'b', dims: [5], type: GGMLType.F16, data: new Float32Array(5) },
      ],
      { alignment: 64 },
    );
    withGGUF(p, (f) => {
      expect(f.get('general.alignment')).toEqual({ type: GGUFValueType.UINT32, value: 64 });
      expect(f.alignment).toBe(64);
      expect(f.dataOffset % 64).toBe(0);
      expect(f.tensors.map((t) => t.offset)).toEqual([0, 64]);
      expect(f.fileSize).toBe(f.dataOffset + 128);
    });
  });

  it('reads tensors beyond 4 GiB (sparse file)', () => {
    // Hand-made header: one F32 tensor of 8 values at data offset 5 GiB, then a sparse file up to there.
    const p = tmp('huge.gguf');
    const parts: Buffer[] = [];
    const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
    const u64 = (n: number | bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
    const str = (s: string) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
    parts.push(Buffer.from('GGUF'));
    u32(3); u64(1); u64(0);
    str('big'); u32(1); u64(8); u32(GGMLType.F32); u64(5 * 2 ** 30);
    const header = Buffer.concat(parts);
    const dataOffset = Math.ceil(header.length / 32) * 32;
    const values = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8.5]);
    const fd = fs.openSync(p, 'w');
    try {
      fs.writeSync(fd, header, 0, header.length, 0);
      fs.writeSync(fd, new Uint8Array(values.buffer), 0, 32, dataOffset + 5 * 2 ** 30);
    } finally {
      fs.closeSync(fd);
    }
    withGGUF(p, (f) => {
      const t = f.tensor('big')!;
      expect(t.fileOffset).toBe(dataOffset + 5 * 2 ** 30);
      expect([...f.readTensorF32(t)]).toEqual([...values]);
      expect([...f.readTensorRowsF32(t, 0, 1)]).toEqual([...values]);
    });
    fs.rmSync(p);
  });
});

describe('GGUF errors', () => {
  it('rejects bad magic, unsupported versions and truncated files', () => {
    fs.writeFileSync(tmp('bad-magic.gguf'), Buffer.from('GGML\x03\x00\x00\x00'));
    expect(() => GGUFFile.open(tmp('bad-magic.gguf'))).toThrow(/not a GGUF file/);
    fs.writeFileSync(tmp('v1.gguf'), Buffer.from('GGUF\x01\x00\x00\x00'));
    expect(() => GGUFFile.open(tmp('v1.gguf'))).toThrow(/version 1/);

    const good = tmp('good.gguf');
    writeGGUF(good, [['a', { type: GGUFValueType.STRING, value: 'x'.repeat(100) }]], [
      { name: 't', dims: [64], type: GGMLType.F32, data: new Float32Array(64) },
    ]);
    const bytes = fs.readFileSync(good);
    fs.writeFileSync(tmp('trunc-meta.gguf'), bytes.subarray(0, 60));
    expect(() => GGUFFile.open(tmp('trunc-meta.gguf'))).toThrow(/end of file/);
    fs.writeFileSync(tmp('trunc-data.gguf'), bytes.subarray(0, bytes.length - 10));
    expect(() => GGUFFile.open(tmp('trunc-data.gguf'))).toThrow(/past the end of the file/);
  });

  it('enforces declaration order, sizes and value ranges when writing', () => {
    const w = new GGUFWriter(tmp('order.gguf'));
    w.addTensor('a', [4], GGMLType.F32).addTensor('b', [4], GGMLType.F32);
    expect(() => w.addTensor('a', [4], GGMLType.F32)).toThrow(/duplicate tensor/);
    w.writeHeader();
    expect(() => w.writeTensorData('b', new Float32Array(4))).toThrow(/expected data for tensor 'a'/);
    expect(() => w.writeTensorData('a', new Float32Array(5))).toThrow(/too much data/);
    w.writeTensorData('a', new Float32Array(2));
    w.writeTensorData('a', new Float32Array(2)); // chunks add up
    expect(() => w.finish()).toThrow(/tensor 'b' is incomplete/);
    expect(fs.existsSync(tmp('order.gguf'))).toBe(false); // the partial file was removed

    expect(() => writeGGUF(tmp('range.gguf'), [['x', { type: GGUFValueType.UINT8, value: 256 }]], [])).toThrow(
      /metadata 'x': 256 is not a valid UINT8/,
    );
    expect(() => new GGUFWriter(tmp('x.gguf'), { alignment: 24 })).toThrow(/power of two/);
  });

  it('writes tensors in chunks with the same bytes as in one piece', () => {
    const data = Float32Array.from({ length: 128 }, (_, i) => Math.sin(i));
    const one = writeGGUF(tmp('one.gguf'), [], [{ name: 'q', dims: [64, 2], type: GGMLType.Q8_0, data }]);
    const w = new GGUFWriter(tmp('chunks.gguf'));
    w.addTensor('q', [64, 2], GGMLType.Q8_0);
    w.writeHeader();
    w.writeTensorData('q', data.subarray(0, 32));
    w.writeTensorData('q', data.subarray(32, 128));
    expect(w.finish().sha256).toBe(one.sha256);
    expect(f32Bits(1)).toBe(0x3f800000);
  });
});
