// bench_onnx.mjs — ONNX Runtime's CPU time for an ONNX model (onnxruntime-node; the anchor of
// docs/PERF.md's "bf16 on the CPU"): intra-op threads as given, one inter-op thread, every
// graph optimisation on; random images of the given batch and size; a few untimed calls,
// then the median of the timed ones, and the process's CPU time per call (all threads).
// --spin 0 turns the intra-op pool's spin-waiting off (session.intra_op.allow_spinning):
// on a machine shared with other jobs a spinning thread holds a core another needs, as
// libgomp's active waiting does (camoxpert waits passively).
//
//   node tools/node/bench_onnx.mjs MODEL.onnx --threads 2 --size 352 --batch 1 --runs 5 [--warmup 2] [--spin 0]
//
// prints one line: "ort BATCHxSIZE threads T spin S: median M ms (runs: ...), C cpu ms per run, I images/s".
import ort from 'onnxruntime-node';

const args = process.argv.slice(2);
const model = args[0];
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i > 0 && i + 1 < args.length ? Number(args[i + 1]) : def;
};
if (!model || model.startsWith('--')) {
  console.error('usage: node bench_onnx.mjs MODEL.onnx [--threads T] [--size S] [--batch B] [--runs R] [--warmup W]');
  process.exit(2);
}
const threads = opt('threads', 2), size = opt('size', 352), batch = opt('batch', 1), runs = opt('runs', 5);
const warmup = opt('warmup', 2), spin = opt('spin', 1);
try {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential', logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: String(spin) } } },
  });
  const data = new Float32Array(batch * 3 * size * size);
  let s = 12345;   // a fixed pseudo-random image (the time does not depend on it)
  for (let i = 0; i < data.length; i++) { s = (s * 1103515245 + 12345) >>> 0; data[i] = (s / 4294967296) * 2 - 1; }
  const feed = { [session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, size, size]) };
  for (let i = 0; i < warmup; i++) await session.run(feed);
  const t = [], c0 = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feed);
    t.push(performance.now() - t0);
  }
  const c1 = process.cpuUsage(c0), cpu = (c1.user + c1.system) / 1000 / runs;
  const sorted = [...t].sort((a, b) => a - b);
  const med = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]
                                : 0.5 * (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]);
  console.log(`ort ${batch}x${size} threads ${threads} spin ${spin}: median ${med.toFixed(1)} ms ` +
              `(runs: ${t.map((v) => v.toFixed(0)).join(' ')}), ${cpu.toFixed(1)} cpu ms per run, ` +
              `${(1000 * batch / med).toFixed(2)} images/s`);
} catch (e) {
  console.error(`onnxruntime: ${e.message}`);
  process.exit(1);
}
