// The gRPC client side of the gateway's gRPC tests: @grpc/grpc-js (pinned in ../package.json)
// calling the KServe v2 / Triton inference service through the gateway, as an application
// would. Prints one JSON line with what it saw.
//   node client.mjs 127.0.0.1:PORT tour        ServerLive, ServerReady, ModelReady, one
//                                              ModelInfer (with its response metadata), a
//                                              call of another service (/test.Echo/Say) with
//                                              and without x-model-name metadata, and calls
//                                              the gateway must refuse
//   node client.mjs 127.0.0.1:PORT load N      N concurrent ModelInfer calls on one channel:
//                                              answers per version, statuses per code, the
//                                              distinct error messages
//   node client.mjs 127.0.0.1:PORT cancel N    N ModelInfer calls, each cancelled after 300 ms
//                                              (RST_STREAM CANCEL): their statuses per code
//   node client.mjs 127.0.0.1:PORT flood       16 calls at a time until stdin closes (at most
//                                              120 s): what a rollout's traffic looks like
//   node client.mjs 127.0.0.1:PORT stream N M F [FAIL]
//                                              N concurrent ModelStreamInfer calls (user id
//                                              u<i>), each sending M messages of F floats one
//                                              at a time: the next only once the answer to the
//                                              last came back (so a relay that held messages
//                                              back would stall); message FAIL (if given) asks
//                                              the backend to fail the stream
//   node client.mjs 127.0.0.1:PORT slow M GAP  one ModelStreamInfer call sending M messages
//                                              GAP ms apart, which the backend answers only
//                                              once the call's request has ended
//   node client.mjs 127.0.0.1:PORT chat N M    N concurrent /test.Echo/Chat calls (raw bytes,
//                                              routed by x-model-name metadata, user id u<i>):
//                                              each waits for the backend's greeting before
//                                              sending anything, then sends M messages one at
//                                              a time, each once the last was answered
//   node client.mjs 127.0.0.1:PORT upload M F  one ModelStreamInfer call writing M messages of
//                                              F floats at once, then ending: every answer,
//                                              through both sides' flow control
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

// /test.Echo/Say (raw bytes, no schema): the backend answers with its version's name.
const echo = (model) => new Promise((resolve) => {
  const metadata = new grpc.Metadata();
  if (model) metadata.set('x-model-name', model);
  const raw = (b) => b;
  client.makeUnaryRequest('/test.Echo/Say', raw, raw, Buffer.alloc(0), metadata,
                          { deadline: new Date(Date.now() + 10000) }, (err, response) => {
    resolve({ code: err ? err.code : 0, details: err ? err.details : '',
              version: response ? response.toString() : null });
  });
});

async function tour() {
  const live = await call('ServerLive', {});
  const ready = await call('ServerReady', {});
  const modelReady = await call('ModelReady', { name: 'm' });
  const one = await infer('m', 'req-1');
  const unknown = await infer('nosuch', 'req-2');
  const unnamed = await call('ModelInfer', { id: 'req-3' });
  const other = await echo('m');
  const otherUnnamed = await echo('');
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
    other,
    other_unnamed: otherUnnamed,
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
  return { versions, codes, details: [...new Set(results.map((r) => r.details).filter((d) => d))] };
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

// One ModelStreamInfer call: `pingPong` sends each message once the last one's answer came.
function streamCall(user, messages, floats, pingPong, failAt = -1) {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set('x-user-id', user);
    const c = client.ModelStreamInfer(metadata, { deadline: new Date(Date.now() + 15000) });
    const seen = { answers: 0, versions: new Set(), in_order: true, sums_ok: true, code: null,
                   details: '' };
    let sent = 0;
    const request = (k) => ({
      model_name: 'm', id: k === failAt ? 'fail' : `${user}-${k}`,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [floats],
                 contents: { fp32_contents: new Array(floats).fill(k + 0.5) } }],
    });
    const sendNext = () => {
      if (sent === messages) {
        c.end();
        return;
      }
      c.write(request(sent));
      sent += 1;
    };
    c.on('data', (r) => {
      const a = r.infer_response;
      const k = seen.answers;
      if (a.id !== `${user}-${k}`) seen.in_order = false;
      const sum = a.outputs?.[0]?.contents?.fp32_contents?.[0];
      if (Math.abs(sum - floats * (k + 0.5)) > 1e-3 * floats) seen.sums_ok = false;
      seen.versions.add(a.model_version);
      seen.answers += 1;
      if (pingPong) sendNext();
    });
    c.on('error', () => {});
    c.on('status', (s) => {
      seen.code = s.code;
      seen.details = s.details;
      resolve(seen);
    });
    if (pingPong) {
      sendNext();
    } else {
      while (sent < messages) sendNext();
      c.end();
    }
  });
}

async function stream(n, messages, floats, failAt) {
  const results = await Promise.all(Array.from({ length: n },
    (_, i) => streamCall(`u${i}`, messages, floats, true, failAt)));
  const codes = {};
  const versions = {};
  let answers = 0;
  let mixed = 0;
  let inOrder = true;
  let sumsOk = true;
  for (const r of results) {
    codes[r.code] = (codes[r.code] ?? 0) + 1;
    answers += r.answers;
    if (r.versions.size > 1) mixed += 1;
    for (const v of r.versions) versions[v] = (versions[v] ?? 0) + 1;
    inOrder &&= r.in_order;
    sumsOk &&= r.sums_ok;
  }
  return { codes, versions, answers, mixed, in_order: inOrder, sums_ok: sumsOk,
           details: results.map((r) => r.details).filter((d) => d) };
}

// One /test.Echo/Chat call: the server's greeting names its version; each answer after it
// must be "<that version>:<the message sent>".
function chatCall(user, messages) {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set('x-model-name', 'm');
    metadata.set('x-user-id', user);
    const raw = (b) => b;
    const c = client.makeBidiStreamRequest('/test.Echo/Chat', raw, raw, metadata,
                                           { deadline: new Date(Date.now() + 15000) });
    const seen = { greeted: null, answers: 0, in_order: true, code: null, details: '' };
    let sent = 0;
    const sendNext = () => {
      if (sent === messages) {
        c.end();
        return;
      }
      c.write(Buffer.from(`${user}-${sent}`));
      sent += 1;
    };
    c.on('data', (b) => {
      const text = b.toString();
      if (seen.greeted === null) {
        seen.greeted = text;
      } else {
        if (text !== `${seen.greeted}:${user}-${seen.answers}`) seen.in_order = false;
        seen.answers += 1;
      }
      sendNext();
    });
    c.on('error', () => {});
    c.on('status', (s) => {
      seen.code = s.code;
      seen.details = s.details;
      resolve(seen);
    });
  });
}

async function chat(n, messages) {
  const results = await Promise.all(Array.from({ length: n }, (_, i) => chatCall(`u${i}`, messages)));
  const codes = {};
  const versions = {};
  let answers = 0;
  let inOrder = true;
  for (const r of results) {
    codes[r.code] = (codes[r.code] ?? 0) + 1;
    if (r.greeted !== null) versions[r.greeted] = (versions[r.greeted] ?? 0) + 1;
    answers += r.answers;
    inOrder &&= r.in_order;
  }
  return { codes, versions, answers, in_order: inOrder,
           details: [...new Set(results.map((r) => r.details).filter((d) => d))] };
}

async function upload(messages, floats) {
  const r = await streamCall('uploader', messages, floats, false);
  return { code: r.code, details: r.details, answers: r.answers, in_order: r.in_order,
           sums_ok: r.sums_ok, versions: [...r.versions] };
}

// Paced on purpose: the gaps are what the test is about (a client that takes its time).
async function slow(messages, gapMs) {
  const metadata = new grpc.Metadata();
  const c = client.ModelStreamInfer(metadata, { deadline: new Date(Date.now() + 15000) });
  let answers = 0;
  const done = new Promise((resolve) => {
    c.on('data', () => { answers += 1; });
    c.on('error', () => {});
    c.on('status', (s) => resolve({ code: s.code, details: s.details, answers }));
  });
  for (let k = 0; k < messages; k += 1) {
    c.write({ model_name: 'm', id: `hold-${k}`, inputs: [] });
    await new Promise((r) => setTimeout(r, gapMs));
  }
  c.end();
  return done;
}

const seen = scenario === 'tour' ? await tour()
  : scenario === 'stream' ? await stream(Number(countText), Number(process.argv[5]),
                                         Number(process.argv[6]), Number(process.argv[7] ?? -1))
  : scenario === 'slow' ? await slow(Number(countText), Number(process.argv[5]))
  : scenario === 'upload' ? await upload(Number(countText), Number(process.argv[5]))
  : scenario === 'chat' ? await chat(Number(countText), Number(process.argv[5]))
  : scenario === 'cancel' ? await cancel(Number(countText ?? 10))
  : scenario === 'flood' ? await flood() : await load(Number(countText ?? 100));
client.close();
console.log(JSON.stringify(seen));
process.exit(0);  // stdin, read by flood, would keep node alive
