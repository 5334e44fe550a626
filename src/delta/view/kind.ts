/**
 * What kind of content a file is, for the delta breakdown (`by_kind` in `delta generate --json`,
 * bench/delta.ts's table): the kinds whose deltas behave differently. Pure: a path and the first
 * bytes of the content in, a kind out. By content first, then by path.
 */

export type ContentKind = 'kernel' | 'initramfs' | 'gzip' | 'elf' | 'other';
export const CONTENT_KINDS: readonly ContentKind[] = ['kernel', 'initramfs', 'gzip', 'elf', 'other'];

/** Bytes of the content contentKind looks at (the x86 boot header ends before 0x270; arm64's magic is at 0x38). */
export const KIND_HEAD_BYTES = 1024;

const startsWith = (head: Uint8Array, at: number, bytes: readonly number[]) => head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));

/** x86 bzImage: "HdrS" at 0x202 (the boot protocol header). */
export const isBzImage = (head: Uint8Array) => startsWith(head, 0x202, ascii('HdrS'));
/** arm64 Image: "ARM\x64" at 0x38. */
const isArm64Image = (head: Uint8Array) => startsWith(head, 0x38, [0x41, 0x52, 0x4d, 0x64]);
const KERNEL_PATH = /^(\/usr)?\/(boot\/vmlinu[xz]|lib\/modules\/[^/]+\/vmlinu[xz])[^/]*$/;
const INITRAMFS_NAME = /\/(initrd|initramfs)[^/]*$/;

export function contentKind(path: string, head: Uint8Array): ContentKind {
  if (isBzImage(head) || isArm64Image(head) || KERNEL_PATH.test(path)) return 'kernel';
  // A newc cpio ("070701", "070702" with CRC) is an uncompressed initramfs, or its early part.
  if (INITRAMFS_NAME.test(path) || startsWith(head, 0, ascii('07070'))) return 'initramfs';
  if (startsWith(head, 0, [0x1f, 0x8b])) return 'gzip';
  if (startsWith(head, 0, [0x7f, 0x45, 0x4c, 0x46])) return 'elf';
  return 'other';
}
