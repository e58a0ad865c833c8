/**
 * Writing a file so that a crash (or a full disk, or Ctrl-C) never leaves half of it: the bytes go to
 * a temporary file in the same directory, are flushed to the disk (fsync), and only then is the
 * temporary renamed over the target. A rename within one file system is atomic, so readers see either
 * the old file or the complete new one.
 */
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const file = await open(temporary, 'w');
  try {
    for (const chunk of chunks) await file.write(chunk);
    await file.sync();
    await file.close();
    await rename(temporary, path);
  } catch (error) {
    await file.close().catch(() => {}); // already closed when the rename failed
    await unlink(temporary).catch(() => {});
    throw error;
  }
}
