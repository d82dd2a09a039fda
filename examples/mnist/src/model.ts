/**
 * The model: a dense network 784 → hidden (relu) → 10 (softmax), trained with tfjs-layers on the
 * WebAssembly backend (pure wasm: no native addon, so the bundle runs on any SuperNode).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { ArrayRecord } from 'pollen/sdk';
import { type Dataset, IMAGE_SIZE, NUM_CLASSES } from './data.js';

const WASM_FILE = 'tfjs-backend-wasm-simd.wasm';

/** Where the .wasm files are: next to this file once bundled, else in the installed package. */
function wasmDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  if (existsSync(join(here, WASM_FILE))) return `${here}/`;
  const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
  return `${dirname(main)}/`;
}

let ready: Promise<void> | undefined;

/** Select the wasm backend once per process. */
export function initBackend(): Promise<void> {
  ready ??= (async () => {
    // Threads need a browser-style Worker/Blob set-up; one thread per node process is the plan.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    setWasmPaths(wasmDir());
    if (!(await tf.setBackend('wasm'))) throw new Error('The tfjs wasm backend failed to start');
    await tf.ready();
  })();
  return ready;
}

/** Stable names for the weights, in model order (tfjs's own names carry a global counter). */
const WEIGHT_NAMES = ['dense1.kernel', 'dense1.bias', 'dense2.kernel', 'dense2.bias'];

export interface ModelOptions {
  hiddenUnits: number;
  learningRate: number;
  /** Seeds the initial weights (the server's global model). */
  seed?: number;
}

export function createModel(o: ModelOptions): tfl.LayersModel {
  const seed = o.seed ?? 0;
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({
        inputShape: [IMAGE_SIZE],
        units: o.hiddenUnits,
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed }),
      }),
      tfl.layers.dense({
        units: NUM_CLASSES,
        activation: 'softmax',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }),
      }),
    ],
  });
  model.compile({
    optimizer: tf.train.adam(o.learningRate),
    loss: 'categoricalCrossentropy',
    metrics: ['accuracy'],
  });
  return model;
}

/** The model's weights as an ArrayRecord (float32, with shapes). */
export function getArrays(model: tfl.LayersModel): ArrayRecord {
  const record = new ArrayRecord();
  model.getWeights().forEach((w, i) => {
    record.set(WEIGHT_NAMES[i] as string, {
      dtype: 'float32',
      shape: w.shape,
      data: w.dataSync() as Float32Array,
    });
  });
  return record;
}

/** Load weights sent by the server; names and shapes must match the model. */
export function setArrays(model: tfl.LayersModel, record: ArrayRecord): void {
  const current = model.getWeights();
  const tensors = current.map((w, i) => {
    const name = WEIGHT_NAMES[i] as string;
    const entry = record.get(name, 'float32');
    if (entry === undefined || entry.shape.join('x') !== w.shape.join('x'))
      throw new Error(`Array "${name}" must be float32 with shape [${w.shape.join(', ')}]`);
    return tf.tensor(entry.data, [...entry.shape]);
  });
  model.setWeights(tensors);
  tf.dispose(tensors);
}

function tensors(data: Dataset, order?: Int32Array): { xs: tf.Tensor; ys: tf.Tensor } {
  return tf.tidy(() => {
    let xs: tf.Tensor = tf.tensor2d(data.x, [data.count, IMAGE_SIZE]);
    let labels: tf.Tensor = tf.tensor1d(data.y, 'int32');
    if (order !== undefined) {
      const idx = tf.tensor1d(order, 'int32');
      xs = tf.gather(xs, idx);
      labels = tf.gather(labels, idx);
    }
    return { xs, ys: tf.oneHot(labels as tf.Tensor1D, NUM_CLASSES) };
  });
}

/** A seeded permutation of 0..n-1 (so a run is reproducible; tfjs's own shuffle is not). */
function permutation(n: number, rng: () => number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i] as number;
    p[i] = p[j] as number;
    p[j] = t;
  }
  return p;
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  rng: () => number;
}

/** Train in place; returns the loss and accuracy of the last epoch. */
export async function fit(
  model: tfl.LayersModel,
  data: Dataset,
  o: TrainOptions,
): Promise<{ loss: number; accuracy: number }> {
  let last = { loss: Number.NaN, accuracy: Number.NaN };
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const { xs, ys } = tensors(data, permutation(data.count, o.rng));
    try {
      const h = await model.fit(xs, ys, { batchSize: o.batchSize, epochs: 1, shuffle: false, verbose: 0 });
      last = { loss: h.history['loss']?.[0] as number, accuracy: h.history['acc']?.[0] as number };
    } finally {
      tf.dispose([xs, ys]);
    }
  }
  return last;
}

export function evaluate(model: tfl.LayersModel, data: Dataset): { loss: number; accuracy: number } {
  const { xs, ys } = tensors(data);
  try {
    const [loss, accuracy] = model.evaluate(xs, ys, { batchSize: 1024 }) as tf.Scalar[];
    const out = { loss: loss!.dataSync()[0] as number, accuracy: accuracy!.dataSync()[0] as number };
    tf.dispose([loss!, accuracy!]);
    return out;
  } finally {
    tf.dispose([xs, ys]);
  }
}
