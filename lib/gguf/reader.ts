/**
 * GGUF reader: parses the header, the metadata and the tensor infos through a small read-ahead buffer, and reads
 * tensor data on demand with positioned reads, so a multi-gigabyte model is never loaded as a whole.
 *
 * Offsets are JS numbers (exact up to 2^53 bytes); 64-bit fields that do not fit are rejected.
 */
import * as fs from 'node:fs';
import {
  GGMLType,
  GGUFArrayItems,
  GGUFArrayValue,
  GGUFValue,
  GGUFValueType,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_KEY_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_SIZE,
  decodeTensorData,
  isValidAlignment,
  tensorByteSize,
  tensorElementCount,
  alignUp,
  GGML_TYPE_TRAITS,
} from './format';

export interface GGUFTensorInfo {
  name: string;
  /** Dimensions, innermost (ne0) first, as ggml and llama.cpp use them. */
  dims: number[];
  type: GGMLType;
  /** Offset of the data relative to the start of the data section, as stored in the file. */
  offset: number;
  /** Absolute file offset of the data. */
  fileOffset: number;
  nElements: number;
  nBytes: number;
}

/** The largest single read; readSync takes at most INT32_MAX bytes per call. */
const MAX_READ = 1 << 30;
/** Read-ahead size while parsing metadata (the Qwen vocabulary alone is ~6 MB of metadata). */
const CHUNK = 1 << 20;

/** Sequential little-endian decoding over a file descriptor, refilling a buffer from `readSync(position)`. */
class FileCursor {
  private buf = Buffer.alloc(CHUNK);
  /** File offset of buf[0]. */
  private bufStart = 0;
  /** Number of valid bytes in buf. */
  private bufLen = 0;
  /** Read position inside buf. */
  private pos = 0;

  constructor(
    private readonly fd: number,
    private readonly fileSize: number,
  ) {}

  /** Absolute file offset of the next byte to decode. */
  get offset(): number {
    return this.bufStart + this.pos;
  }

  /** Makes sure `n` bytes are buffered at the current position. */
  private need(n: number): void {
    if (this.pos + n <= this.bufLen) return;
    const start = this.offset;
    if (start + n > this.fileSize) {
      throw new Error(`unexpected end of file at offset ${start} (needed ${n} more bytes; the file may be truncated)`);
    }
    const size = Math.min(Math.max(n, CHUNK), this.fileSize - start);
    if (this.buf.length < size) this.buf = Buffer.alloc(size);
    this.bufLen = readFully(this.fd, this.buf, 0, size, start);
    this.bufStart = start;
    this.pos = 0;
  }

  private take(n: number): number {
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(): number {
    return this.buf.readUInt8(this.take(1));
  }
  i8(): number {
    return this.buf.readInt8(this.take(1));
  }
  u16(): number {
    return this.buf.readUInt16LE(this.take(2));
  }
  i16(): number {
    return this.buf.readInt16LE(this.take(2));
  }
  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }
  i32(): number {
    return this.buf.readInt32LE(this.take(4));
  }
  f32(): number {
    return this.buf.readFloatLE(this.take(4));
  }
  f64(): number {
    return this.buf.readDoubleLE(this.take(8));
  }
  u64(): bigint {
    return this.buf.readBigUInt64LE(this.take(8));
  }
  i64(): bigint {
    return this.buf.readBigInt64LE(this.take(8));
  }

  /** A u64 that is used as a size or offset, and so must be a safe JS integer. */
  size(what: string): number {
    // Two u32 halves instead of a BigInt: this runs once per string, ~300k times for a vocabulary.
    const at = this.take(8);
    const lo = this.buf.readUInt32LE(at);
    const hi = this.buf.readUInt32LE(at + 4);
    if (hi >= 0x200000) throw new Error(`${what} ${this.buf.readBigUInt64LE(at)} is too large`);
    return hi * 0x100000000 + lo;
  }

  string(): string {
    const len = this.size('string length');
    const at = this.take(len);
    return this.buf.toString('utf8', at, at + len);
  }

  /** Copies `n` raw bytes (used for numeric arrays, which become typed arrays). */
  bytes(n: number): Uint8Array {
    const at = this.take(n);
    return new Uint8Array(this.buf.subarray(at, at + n));
  }
}

/** readSync until `length` bytes arrived; short reads are legal for readSync. */
function readFully(fd: number, target: Uint8Array, targetOffset: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, target, targetOffset + done, Math.min(length - done, MAX_READ), position + done);
    if (n === 0) throw new Error(`unexpected end of file at offset ${position + done}`);
    done += n;
  }
  return done;
}

/** Typed-array constructors for numeric array items, so that big arrays cost one copy instead of a loop. */
const TYPED_ARRAY_OF: Partial<Record<GGUFValueType, (buf: ArrayBuffer) => GGUFArrayItems>> = {
  [GGUFValueType.UINT8]: (b) => new Uint8Array(b),
  [GGUFValueType.INT8]: (b) => new Int8Array(b),
  [GGUFValueType.UINT16]: (b) => new Uint16Array(b),
  [GGUFValueType.INT16]: (b) => new Int16Array(b),
  [GGUFValueType.UINT32]: (b) => new Uint32Array(b),
  [GGUFValueType.INT32]: (b) => new Int32Array(b),
  [GGUFValueType.FLOAT32]: (b) => new Float32Array(b),
  [GGUFValueType.FLOAT64]: (b) => new Float64Array(b),
  [GGUFValueType.UINT64]: (b) => new BigUint64Array(b),
  [GGUFValueType.INT64]: (b) => new BigInt64Array(b),
};

function readArray(cur: FileCursor, depth: number): GGUFArrayValue {
  const itemType = cur.u32() as GGUFValueType;
  const count = cur.size('array length');
  const itemSize = GGUF_VALUE_SIZE[itemType];
  const makeTyped = TYPED_ARRAY_OF[itemType];
  if (makeTyped && itemSize !== undefined) {
    const bytes = cur.bytes(count * itemSize);
    return { type: GGUFValueType.ARRAY, itemType, value: makeTyped(bytes.buffer as ArrayBuffer) };
  }
  switch (itemType) {
    case GGUFValueType.STRING: {
      const items = new Array<string>(count);
      for (let i = 0; i < count; i++) items[i] = cur.string();
      return { type: GGUFValueType.ARRAY, itemType, value: items };
    }
    case GGUFValueType.BOOL: {
      const items = new Array<boolean>(count);
      for (let i = 0; i < count; i++) items[i] = cur.u8() !== 0;
      return { type: GGUFValueType.ARRAY, itemType, value: items };
    }
    case GGUFValueType.ARRAY: {
      if (depth > 8) throw new Error('metadata arrays are nested too deeply');
      const items = new Array<GGUFArrayValue>(count);
      for (let i = 0; i < count; i++) items[i] = readArray(cur, depth + 1);
      return { type: GGUFValueType.ARRAY, itemType, value: items };
    }
    default:
      throw new Error(`unknown metadata array item type ${itemType}`);
  }
}

function readValue(cur: FileCursor, type: GGUFValueType): GGUFValue {
  switch (type) {
    case GGUFValueType.UINT8:
      return { type, value: cur.u8() };
    case GGUFValueType.INT8:
      return { type, value: cur.i8() };
    case GGUFValueType.UINT16:
      return { type, value: cur.u16() };
    case GGUFValueType.INT16:
      return { type, value: cur.i16() };
    case GGUFValueType.UINT32:
      return { type, value: cur.u32() };
    case GGUFValueType.INT32:
      return { type, value: cur.i32() };
    case GGUFValueType.FLOAT32:
      return { type, value: cur.f32() };
    case GGUFValueType.FLOAT64:
      return { type, value: cur.f64() };
    case GGUFValueType.UINT64:
      return { type, value: cur.u64() };
    case GGUFValueType.INT64:
      return { type, value: cur.i64() };
    case GGUFValueType.BOOL:
      return { type, value: cur.u8() !== 0 };
    case GGUFValueType.STRING:
      return { type, value: cur.string() };
    case GGUFValueType.ARRAY:
      return readArray(cur, 0);
    default:
      throw new Error(`unknown metadata value type ${type}`);
  }
}

function readTensorInfo(cur: FileCursor): Omit<GGUFTensorInfo, 'fileOffset'> {
  const name = cur.string();
  const nDims = cur.u32();
  if (nDims > 4) throw new Error(`tensor '${name}' has ${nDims} dimensions (ggml supports at most 4)`);
  const dims: number[] = [];
  for (let i = 0; i < nDims; i++) dims.push(cur.size(`dimension of tensor '${name}'`));
  const type = cur.u32() as GGMLType;
  if (!GGML_TYPE_TRAITS[type]) throw new Error(`tensor '${name}' has unknown ggml type ${type}`);
  const offset = cur.size(`offset of tensor '${name}'`);
  return { name, dims, type, offset, nElements: tensorElementCount(dims), nBytes: tensorByteSize(type, dims) };
}

/** An open GGUF file. Metadata is parsed on open; tensor data is read on request. Call {@link close} when done. */
export class GGUFFile {
  readonly version: number;
  readonly metadata: Map<string, GGUFValue>;
  readonly tensors: GGUFTensorInfo[];
  readonly alignment: number;
  /** Absolute offset of the data section (0-based offsets of tensors are relative to it). */
  readonly dataOffset: number;
  readonly fileSize: number;
  private fd: number | null;
  private readonly byName: Map<string, GGUFTensorInfo>;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
    try {
      this.fileSize = fs.fstatSync(fd).size;
      const cur = new FileCursor(fd, this.fileSize);
      this.version = readPreamble(cur);
      const tensorCount = cur.size('tensor count');
      const kvCount = cur.size('metadata count');
      this.metadata = new Map();
      for (let i = 0; i < kvCount; i++) {
        const key = cur.string();
        if (this.metadata.has(key)) throw new Error(`duplicate metadata key '${key}'`);
        this.metadata.set(key, readValue(cur, cur.u32() as GGUFValueType));
      }
      this.alignment = alignmentOf(this.metadata);
      const infos = Array.from({ length: tensorCount }, () => readTensorInfo(cur));
      this.dataOffset = alignUp(cur.offset, this.alignment);
      this.tensors = infos.map((t) => ({ ...t, fileOffset: this.dataOffset + t.offset }));
      this.byName = new Map(this.tensors.map((t) => [t.name, t]));
      this.validateTensors();
    } catch (err) {
      fs.closeSync(fd);
      this.fd = null;
      throw new Error(`${path}: ${(err as Error).message}`);
    }
  }

  /** Opens and parses `path`; throws with the path in the message when it is not a valid GGUF file. */
  static open(path: string): GGUFFile {
    return new GGUFFile(path, fs.openSync(path, 'r'));
  }

  private validateTensors(): void {
    if (this.byName.size !== this.tensors.length) throw new Error('duplicate tensor names');
    for (const t of this.tensors) {
      if (t.offset % this.alignment !== 0) {
        throw new Error(`tensor '${t.name}' offset ${t.offset} is not aligned to ${this.alignment}`);
      }
      if (t.fileOffset + t.nBytes > this.fileSize) {
        throw new Error(`tensor '${t.name}' data ends past the end of the file (truncated file?)`);
      }
    }
  }

  /** The tensor info for `name`, or undefined. */
  tensor(name: string): GGUFTensorInfo | undefined {
    return this.byName.get(name);
  }

  get(key: string): GGUFValue | undefined {
    return this.metadata.get(key);
  }

  getString(key: string): string | undefined {
    const v = this.metadata.get(key);
    return v?.type === GGUFValueType.STRING ? v.value : undefined;
  }

  /** A numeric scalar of any width (64-bit ones converted with Number()). */
  getNumber(key: string): number | undefined {
    const v = this.metadata.get(key);
    if (v === undefined || typeof v.value === 'string' || typeof v.value === 'boolean') return undefined;
    if (typeof v.value === 'bigint') return Number(v.value);
    return typeof v.value === 'number' ? v.value : undefined;
  }

  getBool(key: string): boolean | undefined {
    const v = this.metadata.get(key);
    return v?.type === GGUFValueType.BOOL ? v.value : undefined;
  }

  getArray(key: string): GGUFArrayValue | undefined {
    const v = this.metadata.get(key);
    return v?.type === GGUFValueType.ARRAY ? v : undefined;
  }

  private info(tensor: string | GGUFTensorInfo): GGUFTensorInfo {
    if (typeof tensor !== 'string') return tensor;
    const t = this.byName.get(tensor);
    if (!t) throw new Error(`${this.path}: no tensor named '${tensor}'`);
    return t;
  }

  private descriptor(): number {
    if (this.fd === null) throw new Error(`${this.path}: file is closed`);
    return this.fd;
  }

  /** Reads `length` bytes at absolute file offset `position`. */
  readBytes(position: number, length: number): Buffer {
    if (position < 0 || position + length > this.fileSize) {
      throw new Error(`${this.path}: read of ${length} bytes at ${position} is outside the file`);
    }
    const out = Buffer.allocUnsafe(length);
    readFully(this.descriptor(), out, 0, length, position);
    return out;
  }

  /** The raw (still encoded) data of a tensor. */
  readTensorBytes(tensor: string | GGUFTensorInfo): Buffer {
    const t = this.info(tensor);
    return this.readBytes(t.fileOffset, t.nBytes);
  }

  /**
   * Raw bytes of `count` rows starting at row `first` (a row is ne0 elements), for reading slices of big tensors
   * such as one token's embedding.
   */
  readTensorRows(tensor: string | GGUFTensorInfo, first: number, count: number): Buffer {
    const t = this.info(tensor);
    const rowBytes = tensorByteSize(t.type, [t.dims[0] ?? 1]);
    const nRows = t.nElements / (t.dims[0] ?? 1);
    if (first < 0 || count < 0 || first + count > nRows) {
      throw new Error(`${this.path}: rows ${first}..${first + count} out of range for '${t.name}' (${nRows} rows)`);
    }
    return this.readBytes(t.fileOffset + first * rowBytes, count * rowBytes);
  }

  /** A tensor decoded to float32 (F32, F16, BF16 and Q8_0 only). */
  readTensorF32(tensor: string | GGUFTensorInfo): Float32Array {
    const t = this.info(tensor);
    return decodeTensorData(t.type, this.readTensorBytes(t), t.nElements);
  }

  /** Rows of a tensor decoded to float32. */
  readTensorRowsF32(tensor: string | GGUFTensorInfo, first: number, count: number): Float32Array {
    const t = this.info(tensor);
    return decodeTensorData(t.type, this.readTensorRows(t, first, count), count * (t.dims[0] ?? 1));
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
}

function readPreamble(cur: FileCursor): number {
  const magic = cur.u32();
  if (magic !== GGUF_MAGIC) throw new Error('not a GGUF file (bad magic)');
  const version = cur.u32();
  if (version === 1) throw new Error('GGUF version 1 is not supported (re-convert the model)');
  // A big-endian GGUF (a rare s390x export) has the magic in file order but a byte-swapped version.
  if (version === 0x02000000 || version === 0x03000000) throw new Error('big-endian GGUF files are not supported');
  if (version !== 2 && version !== 3) throw new Error(`unsupported GGUF version ${version}`);
  return version;
}

function alignmentOf(metadata: Map<string, GGUFValue>): number {
  const v = metadata.get(GGUF_KEY_ALIGNMENT);
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (v.type !== GGUFValueType.UINT32 || !isValidAlignment(v.value)) {
    throw new Error(`${GGUF_KEY_ALIGNMENT} must be a power-of-two uint32`);
  }
  return v.value;
}

/** Runs `fn` with an open GGUF file and closes it afterwards. */
export function withGGUF<T>(path: string, fn: (file: GGUFFile) => T): T {
  const file = GGUFFile.open(path);
  try {
    return fn(file);
  } finally {
    file.close();
  }
}
