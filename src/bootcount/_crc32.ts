/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), the
 * checksum of U-Boot's environment. `node:zlib` has `crc32` from Node 20.15 and in Bun 1.x;
 * older Node 20 releases (the package allows any 20.x) get a 256-entry table instead.
 */
import * as zlib from 'node:zlib';

type Crc32 = (data: Uint8Array) => number;

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

function tableCrc32(): Crc32 {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return (data) => {
    let crc = 0xffffffff;
    for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  };
}

/** CRC-32 of data as an unsigned 32-bit number; crc32('123456789') is 0xcbf43926. */
export const crc32: Crc32 = typeof native === 'function' ? (data) => native(data) >>> 0 : tableCrc32();

/** The table implementation, exported so tests check it against the native one. */
export const crc32Table: Crc32 = tableCrc32();
