/**
 * Streaming GGUF v3 writer.
 *
 * Usage: declare metadata and tensors (name, dims, type), call {@link GGUFWriter.writeHeader}, then feed each
 * tensor's data, in declaration order, in as many chunks as convenient ({@link GGUFWriter.writeTensorData} converts
 * float32 chunks to the tensor's type), and {@link GGUFWriter.finish}. Only one chunk is ever in memory, so models
 * of any size can be written. The file is written under a temporary name and renamed into place on success, and
 * its SHA-256 is computed on the way.
 */
import { createHash, Hash } from 'node:crypto';
import * as fs from 'node:fs';
import {
  GGMLType,
  GGUFArrayItems,
  GGUFArrayValue,
  GGUFNumberType,
  GGUFValue,
  GGUFValueType,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_KEY_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  alignUp,
  encodeTensorData,
  ggmlTypeName,
  ggmlTypeTraits,
  isValidAlignment,
  tensorByteSize,
  tensorElementCount,
} from './format';

export interface GGUFWriterOptions {
  /** Data alignment; values other than 32 are recorded as `general.alignment`. */
  alignment?: number;
  /** Called after every write with the bytes written so far and the final file size. */
  onProgress?: (written: number, total: number) => void;
}

export interface GGUFWriteResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  /** Hex SHA-256 of the whole file. */
  sha256: string;
}

interface PlannedTensor {
  name: string;
  dims: number[];
  type: GGMLType;
  /** Offset relative to the data section. */
  offset: number;
  nBytes: number;
  written: number;
}

/** A growable little-endian byte buffer for the header (metadata can be several megabytes for a vocabulary). */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u8(v: number): void {
    this.buf.writeUInt8(v, this.reserve(1));
  }
  i8(v: number): void {
    this.buf.writeInt8(v, this.reserve(1));
  }
  u16(v: number): void {
    this.buf.writeUInt16LE(v, this.reserve(2));
  }
  i16(v: number): void {
    this.buf.writeInt16LE(v, this.reserve(2));
  }
  u32(v: number): void {
    this.buf.writeUInt32LE(v, this.reserve(4));
  }
  i32(v: number): void {
    this.buf.writeInt32LE(v, this.reserve(4));
  }
  f32(v: number): void {
    this.buf.writeFloatLE(v, this.reserve(4));
  }
  f64(v: number): void {
    this.buf.writeDoubleLE(v, this.reserve(8));
  }
  u64(v: bigint | number): void {
    this.buf.writeBigUInt64LE(BigInt(v), this.reserve(8));
  }
  i64(v: bigint): void {
    this.buf.writeBigInt64LE(v, this.reserve(8));
  }

  string(s: string): void {
    // Encode straight into the buffer (room for the worst case of 3 bytes per UTF-16 unit), then fill in the length.
    const at = this.reserve(8 + s.length * 3);
    const n = this.buf.write(s, at + 8, 'utf8');
    this.buf.writeUInt32LE(n, at);
    this.buf.writeUInt32LE(0, at + 4);
    this.length = at + 8 + n;
  }

  raw(bytes: Uint8Array): void {
    this.buf.set(bytes, this.reserve(bytes.length));
  }

  zeros(n: number): void {
    this.buf.fill(0, this.reserve(n), this.length);
  }

  contents(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

const NUMBER_RANGES: Record<GGUFNumberType, [number, number] | null> = {
  [GGUFValueType.UINT8]: [0, 0xff],
  [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff],
  [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff],
  [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
  [GGUFValueType.FLOAT32]: null,
  [GGUFValueType.FLOAT64]: null,
};

function checkNumber(type: GGUFNumberType, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`expected a number for ${GGUFValueType[type]}, got ${typeof v}`);
  const range = NUMBER_RANGES[type];
  if (range && !(Number.isInteger(v) && v >= range[0] && v <= range[1])) {
    throw new RangeError(`${v} is not a valid ${GGUFValueType[type]}`);
  }
  return v;
}

/** Typed-array classes whose raw bytes are exactly the GGUF encoding of an array of that item type. */
const NATIVE_ARRAY_CLASS: Partial<Record<GGUFValueType, Function>> = {
  [GGUFValueType.UINT8]: Uint8Array,
  [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array,
  [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array,
  [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array,
  [GGUFValueType.FLOAT64]: Float64Array,
  [GGUFValueType.UINT64]: BigUint64Array,
  [GGUFValueType.INT64]: BigInt64Array,
};

function writeScalar(sink: ByteSink, type: GGUFValueType, v: unknown): void {
  switch (type) {
    case GGUFValueType.UINT8:
      return sink.u8(checkNumber(type, v));
    case GGUFValueType.INT8:
      return sink.i8(checkNumber(type, v));
    case GGUFValueType.UINT16:
      return sink.u16(checkNumber(type, v));
    case GGUFValueType.INT16:
      return sink.i16(checkNumber(type, v));
    case GGUFValueType.UINT32:
      return sink.u32(checkNumber(type, v));
    case GGUFValueType.INT32:
      return sink.i32(checkNumber(type, v));
    case GGUFValueType.FLOAT32:
      return sink.f32(checkNumber(type, v));
    case GGUFValueType.FLOAT64:
      return sink.f64(checkNumber(type, v));
    case GGUFValueType.UINT64:
      if (typeof v !== 'bigint') throw new TypeError(`expected a bigint for UINT64, got ${typeof v}`);
      return sink.u64(v);
    case GGUFValueType.INT64:
      if (typeof v !== 'bigint') throw new TypeError(`expected a bigint for INT64, got ${typeof v}`);
      return sink.i64(v);
    case GGUFValueType.BOOL:
      if (typeof v !== 'boolean') throw new TypeError(`expected a boolean for BOOL, got ${typeof v}`);
      return sink.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof v !== 'string') throw new TypeError(`expected a string for STRING, got ${typeof v}`);
      return sink.string(v);
    case GGUFValueType.ARRAY:
      return writeArray(sink, v as GGUFArrayValue);
    default:
      throw new Error(`unknown metadata value type ${type}`);
  }
}

function writeArray(sink: ByteSink, arr: GGUFArrayValue): void {
  if (arr?.type !== GGUFValueType.ARRAY) throw new TypeError('nested array items must be GGUFArrayValue objects');
  const items = arr.value as ArrayLike<unknown>;
  sink.u32(arr.itemType);
  sink.u64(items.length);
  const nativeClass = NATIVE_ARRAY_CLASS[arr.itemType];
  if (nativeClass && items instanceof nativeClass) {
    const typed = items as unknown as ArrayBufferView;
    sink.raw(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
    return;
  }
  for (let i = 0; i < items.length; i++) writeScalar(sink, arr.itemType, items[i]);
}

/** Writes `total` bytes of `data` (looping over short writes) at the current file position. */
function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done);
}

export class GGUFWriter {
  private readonly metadata = new Map<string, GGUFValue>();
  private readonly tensors: PlannedTensor[] = [];
  private readonly tensorNames = new Set<string>();
  private alignment: number;
  private readonly onProgress?: (written: number, total: number) => void;
  private readonly tmpPath: string;
  private fd: number | null = null;
  private hash: Hash | null = null;
  private state: 'declaring' | 'writing' | 'finished' | 'aborted' = 'declaring';
  private current = 0;
  private written = 0;
  private total = 0;

  constructor(
    readonly path: string,
    options: GGUFWriterOptions = {},
  ) {
    this.alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!isValidAlignment(this.alignment)) throw new Error(`alignment ${this.alignment} is not a power of two`);
    this.onProgress = options.onProgress;
    this.tmpPath = `${path}.partial-${process.pid}`;
  }

  /** Bytes written so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Final file size; known once the header has been written. */
  get totalBytes(): number {
    return this.total;
  }

  private expectState(state: GGUFWriter['state'], action: string): void {
    if (this.state !== state) throw new Error(`cannot ${action}: writer is ${this.state}`);
  }

  /** Adds a metadata entry; keys must be unique. */
  addValue(key: string, value: GGUFValue): this {
    this.expectState('declaring', `add metadata '${key}'`);
    if (this.metadata.has(key)) throw new Error(`duplicate metadata key '${key}'`);
    if (key === GGUF_KEY_ALIGNMENT) {
      if (value.type !== GGUFValueType.UINT32 || !isValidAlignment(value.value)) {
        throw new Error(`${GGUF_KEY_ALIGNMENT} must be a power-of-two uint32`);
      }
      this.alignment = value.value;
    }
    this.metadata.set(key, value);
    return this;
  }

  addString(key: string, value: string): this {
    return this.addValue(key, { type: GGUFValueType.STRING, value });
  }
  addBool(key: string, value: boolean): this {
    return this.addValue(key, { type: GGUFValueType.BOOL, value });
  }
  addUint32(key: string, value: number): this {
    return this.addValue(key, { type: GGUFValueType.UINT32, value });
  }
  addInt32(key: string, value: number): this {
    return this.addValue(key, { type: GGUFValueType.INT32, value });
  }
  addFloat32(key: string, value: number): this {
    return this.addValue(key, { type: GGUFValueType.FLOAT32, value });
  }
  addUint64(key: string, value: bigint): this {
    return this.addValue(key, { type: GGUFValueType.UINT64, value });
  }
  addArray(key: string, itemType: GGUFValueType, items: GGUFArrayItems): this {
    return this.addValue(key, { type: GGUFValueType.ARRAY, itemType, value: items });
  }

  /** Declares a tensor; its data must later be written in declaration order. `dims` are ne0 (innermost) first. */
  addTensor(name: string, dims: readonly number[], type: GGMLType): this {
    this.expectState('declaring', `add tensor '${name}'`);
    if (this.tensorNames.has(name)) throw new Error(`duplicate tensor name '${name}'`);
    if (dims.length < 1 || dims.length > 4 || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`tensor '${name}' has invalid dimensions [${dims.join(', ')}]`);
    }
    ggmlTypeTraits(type);
    const nBytes = tensorByteSize(type, dims);
    this.tensorNames.add(name);
    this.tensors.push({ name, dims: [...dims], type, offset: 0, nBytes, written: 0 });
    return this;
  }

  /** Serializes header, metadata and tensor infos, lays out tensor offsets, and opens the output file. */
  writeHeader(): void {
    this.expectState('declaring', 'write the header');
    if (this.alignment !== GGUF_DEFAULT_ALIGNMENT && !this.metadata.has(GGUF_KEY_ALIGNMENT)) {
      this.metadata.set(GGUF_KEY_ALIGNMENT, { type: GGUFValueType.UINT32, value: this.alignment });
    }
    let offset = 0;
    for (const t of this.tensors) {
      t.offset = offset;
      offset = alignUp(offset + t.nBytes, this.alignment);
    }
    const header = this.serializeHeader();
    this.total = header.length + offset;

    this.fd = fs.openSync(this.tmpPath, 'w');
    this.hash = createHash('sha256');
    this.state = 'writing';
    this.emit(header);
    this.skipEmptyTensors();
  }

  private serializeHeader(): Buffer {
    const sink = new ByteSink();
    sink.u32(GGUF_MAGIC);
    sink.u32(GGUF_VERSION);
    sink.u64(this.tensors.length);
    sink.u64(this.metadata.size);
    for (const [key, value] of this.metadata) {
      sink.string(key);
      sink.u32(value.type);
      try {
        // Arrays are written from the whole value object (it carries the item type); scalars from their value.
        writeScalar(sink, value.type, value.type === GGUFValueType.ARRAY ? value : value.value);
      } catch (err) {
        throw new Error(`metadata '${key}': ${(err as Error).message}`);
      }
    }
    for (const t of this.tensors) {
      sink.string(t.name);
      sink.u32(t.dims.length);
      for (const d of t.dims) sink.u64(d);
      sink.u32(t.type);
      sink.u64(t.offset);
    }
    sink.zeros(alignUp(sink.length, this.alignment) - sink.length);
    return sink.contents();
  }

  /** Converts float32 values to the tensor's type and appends them. Q8_0 chunks must be whole blocks of 32. */
  writeTensorData(name: string, data: Float32Array): void {
    if (data.length === 0 && this.tensorNames.has(name)) return; // nothing to add (and empty tensors are done)
    const t = this.currentTensor(name);
    const { blockSize } = ggmlTypeTraits(t.type);
    if (data.length % blockSize !== 0) {
      throw new Error(`chunk of ${data.length} elements for '${name}' is not whole ${ggmlTypeName(t.type)} blocks`);
    }
    this.append(t, encodeTensorData(t.type, data));
  }

  /** Appends already-encoded data for a tensor. */
  writeTensorRaw(name: string, bytes: Uint8Array): void {
    if (bytes.length === 0 && this.tensorNames.has(name)) return;
    this.append(this.currentTensor(name), bytes);
  }

  private currentTensor(name: string): PlannedTensor {
    this.expectState('writing', `write data for '${name}'`);
    const t = this.tensors[this.current];
    if (!t) throw new Error(`all tensors are already written (got data for '${name}')`);
    if (t.name !== name) {
      throw new Error(`expected data for tensor '${t.name}' (tensors are written in declaration order), got '${name}'`);
    }
    return t;
  }

  private append(t: PlannedTensor, bytes: Uint8Array): void {
    if (t.written + bytes.length > t.nBytes) {
      throw new Error(`too much data for tensor '${t.name}': ${t.written + bytes.length} > ${t.nBytes} bytes`);
    }
    this.emit(bytes);
    t.written += bytes.length;
    if (t.written === t.nBytes) this.completeTensor(t);
  }

  /** Pads after a finished tensor so that the next one starts aligned, and moves on. */
  private completeTensor(t: PlannedTensor): void {
    const end = t.offset + t.nBytes;
    const pad = alignUp(end, this.alignment) - end;
    if (pad > 0) this.emit(new Uint8Array(pad));
    this.current++;
    this.skipEmptyTensors();
  }

  private skipEmptyTensors(): void {
    const t = this.tensors[this.current];
    if (t && t.nBytes === 0) this.completeTensor(t);
  }

  private emit(bytes: Uint8Array): void {
    writeAll(this.fd!, bytes);
    this.hash!.update(bytes);
    this.written += bytes.length;
    this.onProgress?.(this.written, this.total);
  }

  /** Checks that every tensor is complete, closes the file and moves it into place. */
  finish(): GGUFWriteResult {
    this.expectState('writing', 'finish');
    const missing = this.tensors[this.current];
    if (missing) {
      this.abort();
      throw new Error(`tensor '${missing.name}' is incomplete (${missing.written} of ${missing.nBytes} bytes written)`);
    }
    fs.closeSync(this.fd!);
    this.fd = null;
    fs.renameSync(this.tmpPath, this.path);
    this.state = 'finished';
    return { path: this.path, bytes: this.written, sha256: this.hash!.digest('hex') };
  }

  /** Closes and deletes the partial file. Safe to call in any state. */
  abort(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
      fs.rmSync(this.tmpPath, { force: true });
    }
    if (this.state !== 'finished') this.state = 'aborted';
  }
}

export interface GGUFTensorInput {
  name: string;
  dims: readonly number[];
  type: GGMLType;
  /** Float32 values (converted to `type`) or already-encoded bytes. */
  data: Float32Array | Uint8Array;
}

/**
 * Writes a complete GGUF file from in-memory metadata and tensors: convenient for small files and tests; use
 * {@link GGUFWriter} directly to stream big tensors.
 */
export function writeGGUF(
  path: string,
  metadata: Iterable<[string, GGUFValue]>,
  tensors: readonly GGUFTensorInput[],
  options: GGUFWriterOptions = {},
): GGUFWriteResult {
  const writer = new GGUFWriter(path, options);
  try {
    for (const [key, value] of metadata) writer.addValue(key, value);
    for (const t of tensors) writer.addTensor(t.name, t.dims, t.type);
    writer.writeHeader();
    for (const t of tensors) {
      if (t.data instanceof Float32Array) {
        if (t.data.length !== tensorElementCount(t.dims)) {
          throw new Error(`tensor '${t.name}' has ${t.data.length} values for dims [${t.dims.join(', ')}]`);
        }
        writer.writeTensorData(t.name, t.data);
      } else {
        writer.writeTensorRaw(t.name, t.data);
      }
    }
    return writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
}
