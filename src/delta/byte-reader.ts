/**
 * A pull reader over a stream of chunks: read exactly n bytes, or hand out the next n bytes
 * piece by piece without holding them all. Used to interpret the three streams of a delta part.
 */
export class StreamEndedError extends Error {
  override name = 'StreamEndedError';
}

/** ByteReader.read allocates up to this many bytes before they have arrived. */
const READ_AT_ONCE_BYTES = 16 * 1024 * 1024;

export class ByteReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private offset = 0;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(source: AsyncIterable<Uint8Array>, readonly name: string) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.offset >= this.chunk.length) {
      const next = await this.iterator.next();
      if (next.done) return false;
      this.chunk = next.value;
      this.offset = 0;
    }
    return true;
  }

  /**
   * Exactly n bytes (a record, a header, a deflate view, an 8 MiB LZ4 block). Gathered as they arrive, so a declared n
   * larger than the stream costs only the bytes that are there. @throws StreamEndedError
   */
  async read(n: number): Promise<Uint8Array> {
    // Most reads (record lengths, records, the views of small .gz files) lie in the current chunk:
    // one copy, no generator.
    if (n <= this.chunk.length - this.offset) {
      // A copy even of a Buffer (whose slice() is a view): chunks may be reused buffers.
      const out = Uint8Array.prototype.slice.call(this.chunk, this.offset, this.offset + n);
      this.offset += n;
      this.consumed += n;
      return out;
    }
    // Up to READ_AT_ONCE_BYTES the result is allocated once and the pieces copied into it; beyond,
    // a declared size is not trusted with an allocation before its bytes arrive.
    if (n <= READ_AT_ONCE_BYTES) {
      const out = new Uint8Array(n);
      let at = 0;
      for await (const piece of this.pieces(n)) {
        out.set(piece, at);
        at += piece.length;
      }
      return out;
    }
    const got: Uint8Array[] = [];
    let total = 0;
    // Copies with set() (a memcpy): Uint8Array.from walks the iterator protocol, 1.3 s per 8 MiB
    // under Bun, which made folding a kernel's LZ4 blocks take 9 s.
    for await (const piece of this.pieces(n)) {
      const copy = new Uint8Array(piece.length);
      copy.set(piece);
      got.push(copy);
      total += copy.length;
    }
    if (got.length === 1) return got[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const g of got) {
      out.set(g, at);
      at += g.length;
    }
    return out;
  }

  /** The next n bytes as a series of views (valid until the next call). @throws StreamEndedError */
  async *pieces(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new StreamEndedError(`${this.name} stream ended ${left} bytes early`);
      const take = Math.min(left, this.chunk.length - this.offset);
      const view = this.chunk.subarray(this.offset, this.offset + take);
      this.offset += take;
      this.consumed += take;
      left -= take;
      yield view;
    }
  }

  /** Bytes left in the current chunk: what the synchronous reads can take without waiting. */
  available(): number {
    return this.chunk.length - this.offset;
  }

  /**
   * Adds the next n bytes, byte by byte modulo 256, into out[at..at+n) (bspatch's diff): one call
   * per op's stretch, no piece objects. Synchronous, returning undefined, when the current chunk
   * holds them; a promise only when the bytes cross into the next chunk: a promise per op was most
   * of the garbage a kernel's patch left to the collector. @throws StreamEndedError
   */
  addInto(out: Uint8Array, at: number, n: number): Promise<void> | undefined {
    if (this.addSync(out, at, n)) return undefined;
    return this.acrossChunks(n, (count) => {
      this.add(out, at, count);
      at += count;
    });
  }

  /** Hands the next n bytes to `use` a chunk's worth at a time (use takes them), reading on as needed. */
  private async acrossChunks(n: number, use: (count: number) => void): Promise<void> {
    while (n > 0) {
      if (this.offset >= this.chunk.length && !(await this.fill())) throw new StreamEndedError(`${this.name} stream ended ${n} bytes early`);
      const count = Math.min(n, this.chunk.length - this.offset);
      use(count);
      n -= count;
    }
  }

  /**
   * Copies the next n bytes into out[at..at+n) (bspatch's extra bytes); synchronous, returning
   * undefined, when the current chunk holds them, as addInto. @throws StreamEndedError
   */
  copyInto(out: Uint8Array, at: number, n: number): Promise<void> | undefined {
    if (this.copySync(out, at, n)) return undefined;
    return this.acrossChunks(n, (count) => {
      this.copySync(out, at, count);
      at += count;
    });
  }

  private copySync(out: Uint8Array, at: number, n: number): boolean {
    if (this.chunk.length - this.offset < n) return false;
    const chunk = this.chunk;
    const from = this.offset;
    // Most extra stretches are a few bytes: a loop, not a subarray object for set().
    if (n < 64) for (let j = 0; j < n; j++) out[at + j] = chunk[from + j];
    else out.set(chunk.subarray(from, from + n), at);
    this.offset += n;
    this.consumed += n;
    return true;
  }

  /** addInto when all n bytes are in the current chunk (true); otherwise nothing is taken (false). */
  addSync(out: Uint8Array, at: number, n: number): boolean {
    if (this.chunk.length - this.offset < n) return false;
    this.add(out, at, n);
    return true;
  }

  private add(out: Uint8Array, at: number, n: number): void {
    const chunk = this.chunk;
    const from = this.offset;
    for (let j = 0; j < n; j++) out[at + j] = (out[at + j] + chunk[from + j]) & 0xff;
    this.offset += n;
    this.consumed += n;
  }

  /** The next byte when the current chunk still holds one, else undefined (then call byte()). */
  byteSync(): number | undefined {
    if (this.offset >= this.chunk.length) return undefined;
    this.consumed++;
    return this.chunk[this.offset++];
  }

  /** The next byte. @throws StreamEndedError */
  async byte(): Promise<number> {
    if (!(await this.fill())) throw new StreamEndedError(`${this.name} stream ended 1 byte early`);
    this.consumed++;
    return this.chunk[this.offset++];
  }

  /** True when no byte is left (a stream must be fully used by its part). */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}
