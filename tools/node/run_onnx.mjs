// run_onnx.mjs — runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU) on raw
// float32 inputs and writes every output as raw float32 (int64 outputs converted):
// the other half of make test's export parity (tests/test_onnx.c).
//
//   node tools/node/run_onnx.mjs MODEL.onnx IN.f32 N,3,H,W OUT_PREFIX [IN2.f32 N,3,H,W OUT_PREFIX2 ...]
//
// writes OUT_PREFIX.<output name>.f32 for each run, and prints one line per run with
// the output shapes. One session serves every run (the model is loaded once).
// Installed with: npm install --ignore-scripts --prefix tools/node (scripts/deps.sh).
import { readFileSync, writeFileSync } from 'node:fs';
import ort from 'onnxruntime-node';

const [model, ...rest] = process.argv.slice(2);
if (!model || rest.length === 0 || rest.length % 3 !== 0) {
  console.error('usage: node run_onnx.mjs MODEL.onnx IN.f32 N,3,H,W OUT_PREFIX [...]');
  process.exit(2);
}
try {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], logSeverityLevel: 3 });
  for (let r = 0; r < rest.length; r += 3) {
    const [file, dims, prefix] = rest.slice(r, r + 3);
    const shape = dims.split(',').map(Number);
    const buf = readFileSync(file);
    const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const t0 = performance.now();
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, shape) });
    const ms = performance.now() - t0;
    const shapes = [];
    for (const name of session.outputNames) {
      const t = out[name];
      const f = t.type === 'float32' ? t.data : Float32Array.from(t.data, Number);
      writeFileSync(`${prefix}.${name}.f32`, Buffer.from(f.buffer, f.byteOffset, f.byteLength));
      shapes.push(`${name} [${t.dims.join(',')}]`);
    }
    console.log(`${file}: ${ms.toFixed(1)} ms: ${shapes.join(', ')}`);
  }
} catch (e) {
  console.error(`onnxruntime: ${e.message}`);
  process.exit(1);
}
