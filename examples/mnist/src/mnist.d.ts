/** The `mnist` package (CommonJS, untyped): ten digit classes, each a flat array of 28×28 images. */
declare module 'mnist' {
  interface Digit {
    readonly id: number;
    /** Pixels in [0, 1], image after image (784 values each). */
    readonly raw: readonly number[];
    /** Number of images of this digit. */
    readonly length: number;
  }
  const digits: readonly Digit[];
  export default digits;
}
