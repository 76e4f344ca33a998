// The gRPC client side of the gateway's gRPC tests: @grpc/grpc-js (pinned in ../package.json)
// calling the KServe v2 / Triton inference service through the gateway, as an application
// would. Prints one JSON line with what it saw.
//   node client.mjs 127.0.0.1:PORT tour        ServerLive, ServerReady, ModelReady, one
//                                              ModelInfer (with its response metadata), and
//                                              calls the gateway must refuse
//   node client.mjs 127.0.0.1:PORT load N      N concurrent ModelInfer calls on one channel:
//                                              answers per version, statuses per code
//   node client.mjs 127.0.0.1:PORT cancel N    N ModelInfer calls, each cancelled after 300 ms
//                                              (RST_STREAM CANCEL): their statuses per code
//   node client.mjs 127.0.0.1:PORT flood       16 calls at a time until stdin closes (at most
//                                              120 s): what a rollout's traffic looks like
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [target, scenario, countText] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync(path.join(here, 'inference.proto'),
                                        { keepCase: true, longs: Number, defaults: true });
const inference = grpc.loadPackageDefinition(definition).inference;
const client = new inference.GRPCInferenceService(target, grpc.credentials.createInsecure());

// One unary call: its response or error, and the response metadata (headers) it came with.
function call(method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve) => {
    let headers = {};
    const deadline = new Date(Date.now() + 10000);
    const c = client[method](request, metadata, { deadline }, (err, response) => {
      resolve({ code: err ? err.code : 0, details: err ? err.details : '', response, headers });
    });
    c.on('metadata', (m) => { headers = m.getMap(); });
  });
}

const infer = (model, id) => call('ModelInfer', {
  model_name: model, id,
  inputs: [{ name: 'x', datatype: 'FP32', shape: [3], contents: { fp32_contents: [1, 2, 3.5] } }],
});

async function tour() {
  const live = await call('ServerLive', {});
  const ready = await call('ServerReady', {});
  const modelReady = await call('ModelReady', { name: 'm' });
  const one = await infer('m', 'req-1');
  const unknown = await infer('nosuch', 'req-2');
  const unnamed = await call('ModelInfer', { id: 'req-3' });
  return {
    live: live.response?.live ?? null,
    ready: ready.response?.ready ?? null,
    model_ready: modelReady.response?.ready ?? null,
    infer: {
      code: one.code,
      version: one.response?.model_version ?? null,
      id: one.response?.id ?? null,
      sum: one.response?.outputs?.[0]?.contents?.fp32_contents?.[0] ?? null,
      header_version: one.headers['x-stagegate-version'] ?? null,
      header_stage: one.headers['x-stagegate-stage'] ?? null,
    },
    unknown: { code: unknown.code, details: unknown.details },
    unnamed: { code: unnamed.code, details: unnamed.details },
  };
}

async function load(n) {
  const results = await Promise.all(Array.from({ length: n }, (_, i) => infer('m', `r${i}`)));
  const versions = {};
  const codes = {};
  for (const r of results) {
    codes[r.code] = (codes[r.code] ?? 0) + 1;
    if (r.code === 0) versions[r.response.model_version] = (versions[r.response.model_version] ?? 0) + 1;
  }
  return { versions, codes };
}

async function flood() {
  let stop = false;
  process.stdin.resume();
  process.stdin.on('end', () => { stop = true; });
  process.stdin.on('close', () => { stop = true; });
  const ends = Date.now() + 120000;
  const versions = {};
  const codes = {};
  let n = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (!stop && Date.now() < ends) {
      const r = await infer('m', `f${n++}`);
      codes[r.code] = (codes[r.code] ?? 0) + 1;
      if (r.code === 0) versions[r.response.model_version] = (versions[r.response.model_version] ?? 0) + 1;
    }
  }));
  return { versions, codes };
}

async function cancel(n) {
  const codes = {};
  await Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve) => {
    const c = client.ModelInfer({ model_name: 'm', id: `c${i}` }, (err) => {
      const code = err ? err.code : 0;
      codes[code] = (codes[code] ?? 0) + 1;
      resolve();
    });
    setTimeout(() => c.cancel(), 300);
  })));
  return { codes };
}

const seen = scenario === 'tour' ? await tour()
  : scenario === 'cancel' ? await cancel(Number(countText ?? 10))
  : scenario === 'flood' ? await flood() : await load(Number(countText ?? 100));
client.close();
console.log(JSON.stringify(seen));
process.exit(0);  // stdin, read by flood, would keep node alive
