// Rendered result images, kept in memory up to a byte budget. The oldest task's images are dropped
// first; their URLs then answer 404, as the provider's do once results expire.
export const createResultImageCache = (maxBytes: number) => {
  const entries = new Map<string, Buffer[]>();
  let totalBytes = 0;

  const remove = (taskId: string) => {
    const images = entries.get(taskId);
    if (!images) return;
    entries.delete(taskId);
    totalBytes -= images.reduce((sum, b) => sum + b.length, 0);
  };

  return {
    put(taskId: string, images: Buffer[]): void {
      remove(taskId);
      entries.set(taskId, images);
      totalBytes += images.reduce((sum, b) => sum + b.length, 0);
      for (const oldest of entries.keys()) {
        if (totalBytes <= maxBytes || oldest === taskId) break;
        remove(oldest);
      }
    },
    get: (taskId: string, index: number): Buffer | undefined => entries.get(taskId)?.[index],
    clear(): void {
      entries.clear();
      totalBytes = 0;
    },
    bytes: (): number => totalBytes,
  };
};

export type ResultImageCache = ReturnType<typeof createResultImageCache>;
