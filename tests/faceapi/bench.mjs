// Times face-api.js on the tfjs WASM backend over its six demo photos.
//
// Per photo: detectAllFaces (SSD MobileNet v1, minConfidence 0.5) + expressions + age/gender,
// the same work as `edge analyze`. Photos are decoded to tensors once (decode time reported
// separately), each photo is warmed up once, then timed --repeat times.
// Prints one JSON object on stdout; progress goes to stderr.
//
// Usage: node bench.mjs [--repeat N] [--dir FACEAPI_PACKAGE_DIR]
// FACEAPI_DIR (env) also sets the directory holding demo/ and model/.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import jpeg from 'jpeg-js';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

const PHOTOS = ['sample1.jpg', 'sample2.jpg', 'sample3.jpg', 'sample4.jpg', 'sample5.jpg', 'sample6.jpg'];

const { values: args } = parseArgs({
  options: {
    repeat: { type: 'string', default: '5' },
    dir: { type: 'string', default: process.env.FACEAPI_DIR ?? '' },
  },
});
const repeat = Number.parseInt(args.repeat, 10);
if (!(repeat > 0)) throw new Error(`--repeat must be a positive integer, got ${args.repeat}`);
const pkgDir = path.resolve(args.dir || path.dirname(require.resolve('@vladmandic/face-api/package.json')));
const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x) => Math.round(x * 100) / 100;

function decode(file) {
  const t0 = performance.now();
  const { width, height, data } = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: false });
  const tensor = tf.tensor3d(data, [height, width, 3], 'int32');
  return { tensor, width, height, ms: performance.now() - t0 };
}

const analyze = (tensor, options) => faceapi.detectAllFaces(tensor, options).withFaceExpressions().withAgeAndGender();

async function main() {
  tf.setWasmPaths(wasmDir + path.sep);
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs wasm backend failed to initialise');
  await tf.ready();

  const modelDir = path.join(pkgDir, 'model');
  for (const net of [faceapi.nets.ssdMobilenetv1, faceapi.nets.ageGenderNet, faceapi.nets.faceExpressionNet]) {
    await net.loadFromDisk(modelDir);
  }
  const options = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 });
  const weightTensors = tf.memory().numTensors;

  const photos = {};
  for (const name of PHOTOS) {
    const img = decode(path.join(pkgDir, 'demo', name));
    const warm0 = performance.now();
    const faces = (await analyze(img.tensor, options)).length;
    const warmupMs = performance.now() - warm0;
    const ms = [];
    for (let i = 0; i < repeat; i += 1) {
      const t0 = performance.now();
      const result = await analyze(img.tensor, options);
      ms.push(performance.now() - t0);
      if (result.length !== faces) throw new Error(`${name}: face count changed (${faces} -> ${result.length})`);
    }
    tf.dispose(img.tensor);
    photos[name] = {
      faces,
      size: [img.width, img.height],
      decode_ms: round(img.ms),
      warmup_ms: round(warmupMs),
      ms: ms.map(round),
      median_ms: round(median(ms)),
    };
    process.stderr.write(`${name}: ${faces} faces, median ${photos[name].median_ms} ms\n`);
  }

  const report = {
    backend: tf.getBackend(),
    threads: tf.getThreadsCount(),
    simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
    multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
    faceapi: faceapi.version,
    tfjs: tf.version_core,
    repeat,
    photos_dir: path.join(pkgDir, 'demo'),
    photos,
    leaked_tensors: tf.memory().numTensors - weightTensors,
    cpus: os.availableParallelism?.() ?? os.cpus().length,
    node: process.version,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
