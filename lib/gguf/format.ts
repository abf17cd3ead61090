/**
 * GGUF file-format constants and element codecs shared by the reader and the writer.
 *
 * Layout of a GGUF v3 file (all integers little-endian):
 *
 *   magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
 *   kv_count  x (key: string, value_type: u32, value)
 *   tensor_count x (name: string, n_dims: u32, ne[n_dims]: u64 (ne0 = innermost first), ggml_type: u32, offset: u64)
 *   padding to `general.alignment` (default 32)
 *   tensor data; each tensor starts at data_start + offset, offsets are multiples of the alignment
 *
 * where string = (length: u64, UTF-8 bytes without terminator) and array = (item_type: u32, count: u64, items).
 * The numbers below mirror ggml.h / gguf-py's constants.py.
 */
import { endianness } from 'node:os';

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** The version this module writes; versions 2 and 3 are read (v1 used 32-bit counts and is obsolete). */
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_KEY_ALIGNMENT = 'general.alignment';

/** Type tags of metadata values. */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Byte size of fixed-size value types (STRING and ARRAY are variable-sized). */
export const GGUF_VALUE_SIZE: Readonly<Partial<Record<GGUFValueType, number>>> = {
  [GGUFValueType.UINT8]: 1,
  [GGUFValueType.INT8]: 1,
  [GGUFValueType.UINT16]: 2,
  [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4,
  [GGUFValueType.INT32]: 4,
  [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT64]: 8,
  [GGUFValueType.INT64]: 8,
  [GGUFValueType.FLOAT64]: 8,
};

/** Value types whose JS representation is a `number`. */
export type GGUFNumberType =
  | GGUFValueType.UINT8
  | GGUFValueType.INT8
  | GGUFValueType.UINT16
  | GGUFValueType.INT16
  | GGUFValueType.UINT32
  | GGUFValueType.INT32
  | GGUFValueType.FLOAT32
  | GGUFValueType.FLOAT64;
/** Value types whose JS representation is a `bigint`. */
export type GGUFBigIntType = GGUFValueType.UINT64 | GGUFValueType.INT64;

/**
 * Items of an array value. The reader returns typed arrays for numeric items (e.g. `Int32Array` for
 * `tokenizer.ggml.token_type`), `string[]`, `boolean[]`, and `GGUFArrayValue[]` for nested arrays; the writer
 * accepts any array-like of the matching JS type.
 */
export type GGUFArrayItems =
  | ArrayLike<number>
  | ArrayLike<bigint>
  | ArrayLike<boolean>
  | ArrayLike<string>
  | ArrayLike<GGUFArrayValue>;

export interface GGUFArrayValue {
  type: GGUFValueType.ARRAY;
  itemType: GGUFValueType;
  value: GGUFArrayItems;
}

/** A typed metadata value; the type tag is kept so that a value read from one file is written back unchanged. */
export type GGUFValue =
  | { type: GGUFNumberType; value: number }
  | { type: GGUFBigIntType; value: bigint }
  | { type: GGUFValueType.BOOL; value: boolean }
  | { type: GGUFValueType.STRING; value: string }
  | GGUFArrayValue;

/** ggml tensor element types (enum ggml_type). Only F32, F16, BF16 and Q8_0 can be encoded/decoded here. */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
}

export interface GGMLTypeTraits {
  /** Elements per block (1 for plain types). A tensor's ne0 must be a multiple of it. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const QK_K = 256;

/** Block geometry of every ggml type, so that the reader can size tensors of any real model file. */
export const GGML_TYPE_TRAITS: Readonly<Record<GGMLType, GGMLTypeTraits>> = {
  [GGMLType.F32]: { blockSize: 1, typeSize: 4 },
  [GGMLType.F16]: { blockSize: 1, typeSize: 2 },
  [GGMLType.Q4_0]: { blockSize: 32, typeSize: 2 + 16 },
  [GGMLType.Q4_1]: { blockSize: 32, typeSize: 2 + 2 + 16 },
  [GGMLType.Q5_0]: { blockSize: 32, typeSize: 2 + 4 + 16 },
  [GGMLType.Q5_1]: { blockSize: 32, typeSize: 2 + 2 + 4 + 16 },
  [GGMLType.Q8_0]: { blockSize: 32, typeSize: 2 + 32 },
  [GGMLType.Q8_1]: { blockSize: 32, typeSize: 2 + 2 + 32 },
  [GGMLType.Q2_K]: { blockSize: QK_K, typeSize: 2 + 2 + QK_K / 16 + QK_K / 4 },
  [GGMLType.Q3_K]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + 12 },
  [GGMLType.Q4_K]: { blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + 12 },
  [GGMLType.Q5_K]: { blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 },
  [GGMLType.Q6_K]: { blockSize: QK_K, typeSize: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 },
  [GGMLType.Q8_K]: { blockSize: QK_K, typeSize: 4 + QK_K + QK_K / 8 },
  [GGMLType.IQ2_XXS]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 },
  [GGMLType.IQ2_XS]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 32 },
  [GGMLType.IQ3_XXS]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 },
  [GGMLType.IQ1_S]: { blockSize: QK_K, typeSize: 2 + QK_K / 8 + QK_K / 16 },
  [GGMLType.IQ4_NL]: { blockSize: 32, typeSize: 2 + 16 },
  [GGMLType.IQ3_S]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 },
  [GGMLType.IQ2_S]: { blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 16 },
  [GGMLType.IQ4_XS]: { blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 64 },
  [GGMLType.I8]: { blockSize: 1, typeSize: 1 },
  [GGMLType.I16]: { blockSize: 1, typeSize: 2 },
  [GGMLType.I32]: { blockSize: 1, typeSize: 4 },
  [GGMLType.I64]: { blockSize: 1, typeSize: 8 },
  [GGMLType.F64]: { blockSize: 1, typeSize: 8 },
  [GGMLType.IQ1_M]: { blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 16 + QK_K / 32 },
  [GGMLType.BF16]: { blockSize: 1, typeSize: 2 },
  [GGMLType.TQ1_0]: { blockSize: QK_K, typeSize: 2 + 4 * 13 },
  [GGMLType.TQ2_0]: { blockSize: QK_K, typeSize: 2 + 64 },
  [GGMLType.MXFP4]: { blockSize: 32, typeSize: 1 + 16 },
};

/** llama_ftype values stored in `general.file_type` (the "mostly" type of the 2-D weights). */
export enum LlamaFileType {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q8_0 = 7,
  MOSTLY_BF16 = 32,
}

export function ggmlTypeTraits(type: GGMLType): GGMLTypeTraits {
  const traits = GGML_TYPE_TRAITS[type];
  if (!traits) throw new Error(`unknown ggml tensor type ${type}`);
  return traits;
}

export function ggmlTypeName(type: GGMLType): string {
  return GGMLType[type] ?? `type${type}`;
}

/** Number of elements of a tensor with dimensions `dims` (ne0 first). */
export function tensorElementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

/** Byte size of a tensor's data; throws when ne0 is not a whole number of blocks. */
export function tensorByteSize(type: GGMLType, dims: readonly number[]): number {
  const { blockSize, typeSize } = ggmlTypeTraits(type);
  const ne0 = dims.length > 0 ? dims[0] : 1;
  if (ne0 % blockSize !== 0) {
    throw new Error(`ne0=${ne0} is not a multiple of the ${ggmlTypeName(type)} block size ${blockSize}`);
  }
  return (tensorElementCount(dims) / blockSize) * typeSize;
}

/** Rounds `n` up to a multiple of `alignment`. */
export function alignUp(n: number, alignment: number): number {
  const rem = n % alignment;
  return rem === 0 ? n : n + alignment - rem;
}

export function isValidAlignment(alignment: number): boolean {
  return Number.isInteger(alignment) && alignment > 0 && (alignment & (alignment - 1)) === 0;
}

// ---------------------------------------------------------------------------------------------------------------------
// Element codecs. Tensor data is reinterpreted through typed-array views, which use the host byte order, so a
// big-endian host would write byte-swapped tensors; every platform Node ships for is little-endian.
// ---------------------------------------------------------------------------------------------------------------------

if (endianness() !== 'LE') {
  throw new Error('qrank: GGUF tensor codecs require a little-endian host');
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Bit pattern of `x` as an IEEE binary32 (the number is first rounded to float32). */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** Float32 value of a binary32 bit pattern. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0];
}

/**
 * IEEE binary16 bits of a binary32 bit pattern, rounding to nearest, ties to even (what ggml gets from F16C's
 * vcvtps2ph and from its portable fallback). Overflow gives ±Inf, values below half the smallest subnormal
 * (2^-25) give ±0, and NaN stays a quiet NaN. Accepts the pattern as a signed or unsigned 32-bit integer.
 */
export function f16BitsFromF32Bits(bits: number): number {
  return f16FromInt32Bits(bits | 0);
}

/** The conversion proper; only ever called with int32 values so that V8 keeps it on small-integer arithmetic. */
function f16FromInt32Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x0200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // < 2^-25: rounds to zero
    // Subnormal result: shift the full significand (with its implicit 1) right and round.
    const sig = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = sig & ((1 << shift) - 1);
    let h = sig >>> shift;
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 65520.. becomes Inf).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
  return sign | h;
}

/** binary16 bits of `x` (rounded to float32 first). */
export function f32ToF16Bits(x: number): number {
  return f16BitsFromF32Bits(f32Bits(x));
}

/** Value of a binary16 bit pattern. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * bfloat16 bits of a binary32 bit pattern, exactly as ggml_compute_fp32_to_bf16: round to nearest even by adding
 * 0x7fff plus the lowest kept bit, NaN forced quiet. Subnormals are kept (not flushed).
 */
export function bf16BitsFromF32Bits(bits: number): number {
  return bf16FromHalves((bits >>> 16) & 0xffff, bits & 0xffff);
}

/** The same on the two 16-bit halves of the pattern, which keeps all arithmetic on small integers. */
function bf16FromHalves(hi: number, lo: number): number {
  const abs = hi & 0x7fff;
  if (abs > 0x7f80 || (abs === 0x7f80 && lo !== 0)) return hi | 0x40; // NaN: quiet it
  return hi + ((lo + 0x7fff + (hi & 1)) >>> 16); // the carry of the rounding add; cannot overflow 16 bits here
}

export function f32ToBf16Bits(x: number): number {
  return bf16BitsFromF32Bits(f32Bits(x));
}

export function bf16BitsToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

let f16Table: Float32Array | undefined;
/** All 65536 binary16 values, so that bulk decoding is a table lookup. */
function f16DecodeTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}


/**
 * Rounds like C's roundf: halfway cases away from zero (Math.round rounds them towards +Inf). Adding ±0.5 and
 * truncating is exact here because x is a float32 value of magnitude <= ~128, so x ± 0.5 is exact in a double.
 */
function roundHalfAway(x: number): number {
  return (x + (x < 0 ? -0.5 : 0.5)) | 0;
}

const QK8_0 = 32;

/**
 * Q8_0 blocks of 32 elements: { d: f16, qs: int8[32] } with d = max|x| / 127 and q = roundf(x / d), computed in
 * float32 exactly as ggml's quantize_row_q8_0_ref (which multiplies by the float32 reciprocal of d).
 */
function encodeQ8_0(src: Float32Array): Uint8Array {
  if (src.length % QK8_0 !== 0) throw new Error(`Q8_0 data must be a multiple of ${QK8_0} elements, got ${src.length}`);
  const nBlocks = src.length / QK8_0;
  const out = new Uint8Array(nBlocks * 34);
  const qs = new Int8Array(out.buffer);
  for (let b = 0; b < nBlocks; b++) {
    const base = b * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(src[base + j]));
    // Float32 semantics via fround: a correctly rounded double result rounded to float32 equals the float32 result.
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const o = b * 34;
    const dBits = f32ToF16Bits(d);
    out[o] = dBits & 0xff;
    out[o + 1] = dBits >>> 8;
    for (let j = 0; j < QK8_0; j++) qs[o + 2 + j] = roundHalfAway(Math.fround(src[base + j] * id));
  }
  return out;
}

function decodeQ8_0(bytes: Uint8Array, nElements: number): Float32Array {
  const out = new Float32Array(nElements);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const table = f16DecodeTable();
  for (let b = 0; b < nElements / QK8_0; b++) {
    const o = b * 34;
    const d = table[view.getUint16(o, true)];
    for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = d * view.getInt8(o + 2 + j);
  }
  return out;
}

/** Types that {@link encodeTensorData} can produce. */
export type EncodableType = GGMLType.F32 | GGMLType.F16 | GGMLType.BF16 | GGMLType.Q8_0;

export function isEncodableType(type: GGMLType): type is EncodableType {
  return type === GGMLType.F32 || type === GGMLType.F16 || type === GGMLType.BF16 || type === GGMLType.Q8_0;
}

/** Encodes float32 values as tensor data of `type`. The result may share memory with `src` for F32. */
export function encodeTensorData(type: GGMLType, src: Float32Array): Uint8Array {
  switch (type) {
    case GGMLType.F32:
      return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    case GGMLType.F16: {
      const bits = new Int32Array(src.buffer, src.byteOffset, src.length);
      const out = new Uint16Array(src.length);
      for (let i = 0; i < bits.length; i++) out[i] = f16FromInt32Bits(bits[i]);
      return new Uint8Array(out.buffer);
    }
    case GGMLType.BF16: {
      const halves = new Uint16Array(src.buffer, src.byteOffset, src.length * 2); // little-endian: lo, hi
      const out = new Uint16Array(src.length);
      for (let i = 0; i < out.length; i++) out[i] = bf16FromHalves(halves[2 * i + 1], halves[2 * i]);
      return new Uint8Array(out.buffer);
    }
    case GGMLType.Q8_0:
      return encodeQ8_0(src);
    default:
      throw new Error(`cannot encode tensors of type ${ggmlTypeName(type)}`);
  }
}

/** Decodes `nElements` values of tensor data of `type` (F32, F16, BF16 or Q8_0) to float32. */
export function decodeTensorData(type: GGMLType, bytes: Uint8Array, nElements: number): Float32Array {
  const expected = tensorByteSize(type, [nElements]);
  if (bytes.byteLength < expected) throw new Error(`need ${expected} bytes to decode, got ${bytes.byteLength}`);
  // Copy into a fresh, aligned buffer: file reads may land at any byte offset.
  const aligned = (n: number) => new Uint8Array(bytes.subarray(0, n)).buffer;
  switch (type) {
    case GGMLType.F32:
      return new Float32Array(aligned(expected));
    case GGMLType.F16: {
      const table = f16DecodeTable();
      const h = new Uint16Array(aligned(expected));
      const out = new Float32Array(nElements);
      for (let i = 0; i < nElements; i++) out[i] = table[h[i]];
      return out;
    }
    case GGMLType.BF16: {
      const h = new Uint16Array(aligned(expected));
      const out = new Uint32Array(nElements);
      for (let i = 0; i < nElements; i++) out[i] = h[i] << 16;
      return new Float32Array(out.buffer);
    }
    case GGMLType.Q8_0:
      return decodeQ8_0(bytes, nElements);
    default:
      throw new Error(`cannot decode tensors of type ${ggmlTypeName(type)}`);
  }
}
