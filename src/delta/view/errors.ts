/** A compressed stream the view codecs refuse or a view that is malformed. `reason`: 'refused' (valid stream, but not one the view can rebuild byte-exactly: the generator falls back), 'corrupt' (malformed input: on the device this is DELTA_CORRUPT), 'limit' (over a size limit). */
export class ViewError extends Error {
  override name = 'ViewError';
  constructor(
    readonly reason: 'refused' | 'corrupt' | 'limit',
    message: string,
  ) {
    super(message);
  }
}
