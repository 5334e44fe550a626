/**
 * The LZ4 block compressors behind lz4.ts, ports of lz4 1.9.4 read from its sources (tag v1.9.4,
 * commit 5ff8396): `compressFast` is `LZ4_compress_fast(acceleration 1)` from lib/lz4.c (what
 * programs/lz4io.c's legacy mode calls below level 3), `compressHashChain` is
 * `LZ4HC_compress_hashChain` from lib/lz4hc.c (levels 3-9: 2^(level-1) attempts, and at level 9
 * the repeated-pattern analysis). Both run on a fresh state per call, as lz4io's calls do. Pure.
 * docs/design/lz4-legacy.md §3 says what each step must do for the bytes to be exact.
 *
 * The structure of the two match finders is carried over from lz4, hence its notice:
 *
 *   LZ4 - Fast LZ compression algorithm / LZ4 HC - High Compression Mode of LZ4
 *   Copyright (C) 2011-2020, Yann Collet.
 *   BSD 2-Clause License (http://www.opensource.org/licenses/bsd-license.php)
 *
 *   Redistribution and use in source and binary forms, with or without modification, are
 *   permitted provided that the following conditions are met:
 *   * Redistributions of source code must retain the above copyright notice, this list of
 *     conditions and the following disclaimer.
 *   * Redistributions in binary form must reproduce the above copyright notice, this list of
 *     conditions and the following disclaimer in the documentation and/or other materials
 *     provided with the distribution.
 *
 *   THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
 *   IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY
 *   AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR
 *   CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 *   CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
 *   SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
 *   THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR
 *   OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 *   POSSIBILITY OF SUCH DAMAGE.
 */
const MINMATCH = 4;
const LASTLITERALS = 5;
const MFLIMIT = 12;
const MIN_LENGTH = MFLIMIT + 1;
const DISTANCE_MAX = 65535;
/** LZ4HC_compress_hashChain's OPTIMAL_ML: (ML_MASK - 1) + MINMATCH. */
const OPTIMAL_ML = 18;

/** LZ4_compressBound: the largest block the encoders can make of `n` bytes. */
export function lz4CompressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

// ---- LZ4_compress_fast (levels 1-2) ------------------------------------------

/** LZ4_hash5 for the byU32 table (4096 entries): the top 12 bits of ((5 bytes << 24) * 889523592379) mod 2^64, in 20-bit limbs so doubles stay exact. */
const PRIME5_LO = 889523592379 % 1048576;
const PRIME5_HI = Math.floor(889523592379 / 1048576);
function hash5(s: Uint8Array, p: number): number {
  const lo = s[p] | (s[p + 1] << 8) | (s[p + 2] << 16) | (s[p + 3] << 24);
  const xl = lo & 0xfffff;
  const xh = (lo >>> 20) | (s[p + 4] << 12);
  const mid = (Math.imul(xh, PRIME5_LO) + Math.imul(xl, PRIME5_HI)) & 0xfffff;
  return Math.floor((xl * PRIME5_LO + mid * 1048576) / 268435456) & 0xfff;
}

/** LZ4_hash4 for the byU16 table (8192 entries), used below LZ4_64Klimit. */
function hash4(s: Uint8Array, p: number): number {
  return Math.imul(s[p] | (s[p + 1] << 8) | (s[p + 2] << 16) | (s[p + 3] << 24), 2654435761) >>> 19;
}

const read32 = (s: Uint8Array, p: number) => s[p] | (s[p + 1] << 8) | (s[p + 2] << 16) | (s[p + 3] << 24);

/** Writes the last literals `s[anchor, n)` at `op`; returns the new end. */
function lastLiterals(s: Uint8Array, anchor: number, n: number, out: Uint8Array, op: number): number {
  const run = n - anchor;
  if (run >= 15) {
    out[op++] = 0xf0;
    let acc = run - 15;
    for (; acc >= 255; acc -= 255) out[op++] = 255;
    out[op++] = acc;
  } else {
    out[op++] = run << 4;
  }
  out.set(s.subarray(anchor, n), op);
  return op + run;
}

/** Port of LZ4_compress_fast(src, dst, n, bound, 1) (lz4.c LZ4_compress_generic_validated, noDict, notLimited, byU16 or byU32). */
export function compressFast(s: Uint8Array, out: Uint8Array): number {
  const n = s.length;
  if (n === 0) {
    out[0] = 0;
    return 1;
  }
  // Below LZ4_64Klimit (64 KiB + MFLIMIT - 1) lz4 uses 16-bit positions, a 13-bit hash and no distance check.
  const u16 = n < 65536 + MFLIMIT - 1;
  const table = new Uint32Array(u16 ? 8192 : 4096);
  const mflimitPlusOne = n - MFLIMIT + 1;
  const matchlimit = n - LASTLITERALS;
  let op = 0;
  let anchor = 0;
  if (n >= MIN_LENGTH) {
    table[u16 ? hash4(s, 0) : hash5(s, 0)] = 0;
    let ip = 1;
    let forwardH = u16 ? hash4(s, 1) : hash5(s, 1);
    outer: for (;;) {
      let match = 0;
      let forwardIp = ip;
      let step = 1;
      let searchMatchNb = 1 << 6; // acceleration << LZ4_skipTrigger
      for (;;) {
        const h = forwardH;
        const current = forwardIp;
        const matchIndex = table[h];
        ip = forwardIp;
        forwardIp += step;
        step = searchMatchNb++ >> 6;
        if (forwardIp > mflimitPlusOne) break outer;
        match = matchIndex;
        forwardH = u16 ? hash4(s, forwardIp) : hash5(s, forwardIp);
        table[h] = current;
        if (!u16 && matchIndex + DISTANCE_MAX < current) continue;
        if (read32(s, match) === read32(s, ip)) break;
      }
      // Catch up: extend the match backwards over the pending literals.
      while (ip > anchor && match > 0 && s[ip - 1] === s[match - 1]) {
        ip--;
        match--;
      }
      let token = op++;
      const litLength = ip - anchor;
      if (litLength >= 15) {
        out[token] = 0xf0;
        let len = litLength - 15;
        for (; len >= 255; len -= 255) out[op++] = 255;
        out[op++] = len;
      } else {
        out[token] = litLength << 4;
      }
      for (let i = 0; i < litLength; i++) out[op + i] = s[anchor + i];
      op += litLength;
      for (;;) {
        // _next_match
        const offset = ip - match;
        out[op++] = offset & 0xff;
        out[op++] = offset >>> 8;
        let p = ip + MINMATCH;
        let q = match + MINMATCH;
        while (p < matchlimit && s[p] === s[q]) {
          p++;
          q++;
        }
        let matchCode = p - ip - MINMATCH;
        ip = p;
        if (matchCode >= 15) {
          out[token] += 15;
          matchCode -= 15;
          for (; matchCode >= 255; matchCode -= 255) out[op++] = 255;
          out[op++] = matchCode;
        } else {
          out[token] += matchCode;
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) break outer;
        table[u16 ? hash4(s, ip - 2) : hash5(s, ip - 2)] = ip - 2;
        const h = u16 ? hash4(s, ip) : hash5(s, ip);
        const matchIndex = table[h];
        table[h] = ip;
        if ((u16 || matchIndex + DISTANCE_MAX >= ip) && read32(s, matchIndex) === read32(s, ip)) {
          match = matchIndex;
          token = op++;
          out[token] = 0;
          continue;
        }
        break;
      }
      ip++;
      forwardH = u16 ? hash4(s, ip) : hash5(s, ip);
    }
  }
  return lastLiterals(s, anchor, n, out, op);
}

// ---- LZ4HC hash chain (levels 3-9) ---------------------------------------------

/**
 * lz4hc numbers positions from 64 KiB (LZ4HC_init_internal on a fresh state): index = position +
 * HC_BASE, so the zeroed hash table's entries are all out of reach and the first chain links are
 * clamped to LZ4_DISTANCE_MAX, as in C.
 */
const HC_BASE = 65536;
const HC_HASH_LOG = 15;

/** The match a search found (LZ4HC_InsertAndGetWiderMatch's *matchpos and *startpos), as positions. */
let foundMatch = 0;
let foundStart = 0;
/** LZ4HC_CCtx_internal.nextToUpdate: the first index not yet in the tables. */
let nextToUpdate = 0;
/** The index of the last search's position and its hash (a cache for LZ4HC_Insert). */
let lastSearchIndex = -1;
let lastSearchHash = 0;

/**
 * LZ4HC_InsertAndGetWiderMatch (no dictionary, no chain swap, favorCompressionRatio): inserts the
 * positions up to `ip`, then follows the hash chain for up to `maxAttempts` candidates, looking for
 * a match longer than `longest` that may start up to `ip - iLowLimit` bytes before `ip`. Returns the
 * longest length; foundMatch/foundStart are set only when it grew.
 */
function widerMatch(s: Uint8Array, hashTable: Uint32Array, chain: Uint16Array, ip: number, iLowLimit: number, iHighLimit: number, longest: number, maxAttempts: number, patternAnalysis: boolean): number {
  const ipIndex = ip + HC_BASE;
  const lowestMatchIndex = HC_BASE + DISTANCE_MAX + 1 > ipIndex ? HC_BASE : ipIndex - DISTANCE_MAX;
  const lookBack = ip - iLowLimit;
  const pattern = s[ip] | (s[ip + 1] << 8) | (s[ip + 2] << 16) | (s[ip + 3] << 24);
  // LZ4HC_Insert. The previous search's own position is usually the first to insert: its hash is
  // known (a byte-by-byte search hashes every position twice otherwise).
  let idx = nextToUpdate;
  if (idx === lastSearchIndex && idx < ipIndex) {
    const delta = idx - hashTable[lastSearchHash];
    chain[idx & 0xffff] = delta < 0 || delta > DISTANCE_MAX ? DISTANCE_MAX : delta;
    hashTable[lastSearchHash] = idx;
    idx++;
  }
  for (; idx < ipIndex; idx++) {
    const p = idx - HC_BASE;
    const h = Math.imul(s[p] | (s[p + 1] << 8) | (s[p + 2] << 16) | (s[p + 3] << 24), 2654435761) >>> (32 - HC_HASH_LOG);
    // U32 arithmetic in C: a position inserted again (see below) may see a later one (a huge
    // difference, clamped) or itself (0).
    const delta = idx - hashTable[h];
    chain[idx & 0xffff] = delta < 0 || delta > DISTANCE_MAX ? DISTANCE_MAX : delta;
    hashTable[h] = idx;
  }
  // As in C, even when this is behind a previous search (after lz4hc restores an earlier match):
  // the positions from here on are then inserted again by the next search.
  nextToUpdate = ipIndex;
  const patternHash = Math.imul(pattern, 2654435761) >>> (32 - HC_HASH_LOG);
  lastSearchIndex = ipIndex;
  lastSearchHash = patternHash;
  let matchIndex = hashTable[patternHash];
  let nbAttempts = maxAttempts;
  let repeat = 0; // 0 untested, 1 not a pattern, 2 confirmed
  let srcPatternLength = 0;
  // The cheap test first (lz4's read16): the two bytes at which a candidate would have to go on
  // matching to beat `longest`, kept in locals until `longest` changes.
  let tailOffset = longest - 1 - lookBack;
  let tail0 = s[iLowLimit + longest - 1];
  let tail1 = s[iLowLimit + longest];
  while (matchIndex >= lowestMatchIndex && nbAttempts > 0) {
    nbAttempts--;
    const m = matchIndex - HC_BASE;
    const b = m + tailOffset;
    if (s[b] === tail0 && s[b + 1] === tail1 && (s[m] | (s[m + 1] << 8) | (s[m + 2] << 16) | (s[m + 3] << 24)) === pattern) {
      let back = 0;
      if (lookBack !== 0) {
        const min = Math.max(iLowLimit - ip, -m);
        while (back > min && s[ip + back - 1] === s[m + back - 1]) back--;
      }
      let p = ip + MINMATCH;
      let q = m + MINMATCH;
      while (p < iHighLimit && s[p] === s[q]) {
        p++;
        q++;
      }
      const matchLength = p - ip - back;
      if (matchLength > longest) {
        longest = matchLength;
        foundMatch = m + back;
        foundStart = ip + back;
        tailOffset = longest - 1 - lookBack;
        tail0 = s[iLowLimit + longest - 1];
        tail1 = s[iLowLimit + longest];
      }
    }
    const distNextMatch = chain[matchIndex & 0xffff];
    if (patternAnalysis && distNextMatch === 1) {
      const candidate = matchIndex - 1;
      if (repeat === 0) {
        // lz4's test accepts only a 4-byte pattern whose bytes are all equal: a run of one byte.
        if ((pattern & 0xffff) === pattern >>> 16 && (pattern & 0xff) === pattern >>> 24) {
          repeat = 2;
          srcPatternLength = runLength(s, ip + 4, iHighLimit, pattern & 0xff) + 4;
        } else {
          repeat = 1;
        }
      }
      // LZ4HC_protectDictEnd always holds here: every index is at or above the prefix's start.
      if (repeat === 2 && candidate >= lowestMatchIndex) {
        const mp = candidate - HC_BASE;
        if (read32(s, mp) === pattern) {
          // Both counts stop where more would not change the outcome (lz4 counts to the run's
          // ends): the forward one is only ever compared with srcPatternLength, and the backward
          // one is clamped to lowestMatchIndex next. Long zero runs would otherwise cost
          // O(run length) per candidate.
          const forwardPatternLength = runLength(s, mp + 4, Math.min(iHighLimit, mp + srcPatternLength + 1), pattern & 0xff) + 4;
          const lowest = Math.max(0, lowestMatchIndex - HC_BASE);
          let backLength = 0;
          while (mp - backLength > lowest && s[mp - backLength - 1] === (pattern & 0xff)) backLength++;
          backLength = candidate - Math.max(candidate - backLength, lowestMatchIndex);
          const currentSegmentLength = backLength + forwardPatternLength;
          if (currentSegmentLength >= srcPatternLength && forwardPatternLength <= srcPatternLength) {
            // The run holds the whole source run: jump to the candidate that ends with it.
            matchIndex = candidate + forwardPatternLength - srcPatternLength;
          } else {
            matchIndex = candidate - backLength;
            if (lookBack === 0) {
              const maxML = Math.min(currentSegmentLength, srcPatternLength);
              if (longest < maxML) {
                if (ipIndex - matchIndex > DISTANCE_MAX) break;
                longest = maxML;
                foundMatch = matchIndex - HC_BASE;
                foundStart = ip;
                tailOffset = longest - 1 - lookBack;
                tail0 = s[iLowLimit + longest - 1];
                tail1 = s[iLowLimit + longest];
              }
              const distToNextPattern = chain[matchIndex & 0xffff];
              if (distToNextPattern > matchIndex) break;
              matchIndex -= distToNextPattern;
            }
          }
          continue;
        }
      }
    }
    matchIndex -= distNextMatch;
  }
  return longest;
}

/** Bytes equal to `byte` from `p` up to `end` (LZ4HC_countPattern for a one-byte pattern). */
function runLength(s: Uint8Array, p: number, end: number, byte: number): number {
  const start = p;
  while (p < end && s[p] === byte) p++;
  return p - start;
}

/** Output position of the HC encoder (LZ4HC_encodeSequence's *op). */
let hcOp = 0;

/** LZ4HC_encodeSequence: literals s[anchor, ip), then a match of `ml` at `ref`. Advances hcOp. */
function encodeSequence(s: Uint8Array, out: Uint8Array, anchor: number, ip: number, ml: number, ref: number): void {
  let op = hcOp;
  const token = op++;
  let length = ip - anchor;
  let t: number;
  if (length >= 15) {
    t = 0xf0;
    let len = length - 15;
    for (; len >= 255; len -= 255) out[op++] = 255;
    out[op++] = len;
  } else {
    t = length << 4;
  }
  if (length < 32) {
    for (let i = 0; i < length; i++) out[op + i] = s[anchor + i];
  } else {
    out.set(s.subarray(anchor, ip), op);
  }
  op += length;
  const offset = ip - ref;
  out[op++] = offset & 0xff;
  out[op++] = offset >>> 8;
  length = ml - MINMATCH;
  if (length >= 15) {
    t += 15;
    length -= 15;
    for (; length >= 255; length -= 255) out[op++] = 255;
    out[op++] = length;
  } else {
    t += length;
  }
  out[token] = t;
  hcOp = op;
}

const hcHashTable = new Uint32Array(1 << HC_HASH_LOG);
const hcChain = new Uint16Array(65536);

/** Port of LZ4HC_compress_hashChain (noDictCtx, notLimited) on a fresh state, as LZ4_compress_HC runs it. */
export function compressHashChain(s: Uint8Array, out: Uint8Array, maxAttempts: number): number {
  const n = s.length;
  const patternAnalysis = maxAttempts > 128; // level 9
  // A fresh state, as C's per call; the tables are reused and cleared (256 KiB less garbage a block).
  const hashTable = hcHashTable.fill(0);
  const chain = hcChain.fill(0);
  nextToUpdate = HC_BASE;
  lastSearchIndex = -1;
  hcOp = 0;
  const mflimit = n - MFLIMIT;
  const matchlimit = n - LASTLITERALS;
  let ip = 0;
  let anchor = 0;
  if (n >= MIN_LENGTH) {
    main: while (ip <= mflimit) {
      let ml = widerMatch(s, hashTable, chain, ip, ip, matchlimit, MINMATCH - 1, maxAttempts, patternAnalysis);
      if (ml < MINMATCH) {
        ip++;
        continue;
      }
      let ref = foundMatch;
      // Saved, in case the next search moves ip too far.
      let start0 = ip;
      let ref0 = ref;
      let ml0 = ml;
      let start2 = 0;
      let ref2 = 0;
      let ml2 = 0;
      let start3 = 0;
      let ref3 = 0;
      let ml3 = 0;
      search2: for (;;) {
        if (ip + ml <= mflimit) {
          ml2 = widerMatch(s, hashTable, chain, ip + ml - 2, ip, matchlimit, ml, maxAttempts, patternAnalysis);
          ref2 = foundMatch;
          start2 = foundStart;
        } else {
          ml2 = ml;
        }
        if (ml2 === ml) {
          // No better match: encode ML1.
          encodeSequence(s, out, anchor, ip, ml, ref);
          ip += ml;
          anchor = ip;
          continue main;
        }
        if (start0 < ip && start2 < ip + ml0) {
          // Squeezing ML1 between ML0 and ML2: restore the first match.
          ip = start0;
          ref = ref0;
          ml = ml0;
        }
        if (start2 - ip < 3) {
          // The first match is too short: drop it.
          ml = ml2;
          ip = start2;
          ref = ref2;
          continue search2;
        }
        search3: for (;;) {
          if (start2 - ip < OPTIMAL_ML) {
            let newMl = ml;
            if (newMl > OPTIMAL_ML) newMl = OPTIMAL_ML;
            if (ip + newMl > start2 + ml2 - MINMATCH) newMl = start2 - ip + ml2 - MINMATCH;
            const correction = newMl - (start2 - ip);
            if (correction > 0) {
              start2 += correction;
              ref2 += correction;
              ml2 -= correction;
            }
          }
          if (start2 + ml2 <= mflimit) {
            ml3 = widerMatch(s, hashTable, chain, start2 + ml2 - 3, start2, matchlimit, ml2, maxAttempts, patternAnalysis);
            ref3 = foundMatch;
            start3 = foundStart;
          } else {
            ml3 = ml2;
          }
          if (ml3 === ml2) {
            // No better match: encode ML1 and ML2.
            if (start2 < ip + ml) ml = start2 - ip;
            encodeSequence(s, out, anchor, ip, ml, ref);
            ip += ml;
            anchor = ip;
            ip = start2;
            encodeSequence(s, out, anchor, ip, ml2, ref2);
            ip += ml2;
            anchor = ip;
            continue main;
          }
          if (start3 < ip + ml + 3) {
            // Not enough room for match 2: remove it.
            if (start3 >= ip + ml) {
              // Seq1 can be written now; Seq3 becomes Seq1.
              if (start2 < ip + ml) {
                const correction = ip + ml - start2;
                start2 += correction;
                ref2 += correction;
                ml2 -= correction;
                if (ml2 < MINMATCH) {
                  start2 = start3;
                  ref2 = ref3;
                  ml2 = ml3;
                }
              }
              encodeSequence(s, out, anchor, ip, ml, ref);
              ip += ml;
              anchor = ip;
              ip = start3;
              ref = ref3;
              ml = ml3;
              start0 = start2;
              ref0 = ref2;
              ml0 = ml2;
              continue search2;
            }
            start2 = start3;
            ref2 = ref3;
            ml2 = ml3;
            continue search3;
          }
          // Three ascending matches: write the first, shortened to where the second starts.
          if (start2 < ip + ml) {
            if (start2 - ip < OPTIMAL_ML) {
              if (ml > OPTIMAL_ML) ml = OPTIMAL_ML;
              if (ip + ml > start2 + ml2 - MINMATCH) ml = start2 - ip + ml2 - MINMATCH;
              const correction = ml - (start2 - ip);
              if (correction > 0) {
                start2 += correction;
                ref2 += correction;
                ml2 -= correction;
              }
            } else {
              ml = start2 - ip;
            }
          }
          encodeSequence(s, out, anchor, ip, ml, ref);
          ip += ml;
          anchor = ip;
          ip = start2;
          ref = ref2;
          ml = ml2;
          start2 = start3;
          ref2 = ref3;
          ml2 = ml3;
          continue search3;
        }
      }
    }
  }
  return lastLiterals(s, anchor, n, out, hcOp);
}
