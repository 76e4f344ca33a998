// A KServe v2 / Triton-style gRPC model server played by @grpc/grpc-js (pinned in
// ../package.json), for the gateway's gRPC tests: one model version per process.
//   node backend.mjs --version v1 --port-file FILE [--unavailable-every N] [--latency-ms N]
//                    [--max-connection-age-ms N] [--cancel-file FILE] [--cert FILE --key FILE
//                    [--client-ca FILE]]
// Listens on 127.0.0.1:0 (HTTP/2 cleartext, or over TLS with --cert and --key: grpc-js then
// selects "h2" by ALPN; --client-ca: only clients whose certificate that CA signed, mutual
// TLS) and writes its port to FILE. ModelInfer answers
// with the version in model_version and the inputs' sum as output; every Nth ModelInfer
// fails with UNAVAILABLE after its response headers (a 200 whose trailers carry the error,
// as a real server's does). --max-connection-age-ms: grpc's MAX_CONNECTION_AGE, as servers
// behind load balancers set it: each connection gets a GOAWAY once that old (calls in flight
// finish, later streams are refused), while the server keeps listening. --cancel-file: the
// number of calls cancelled before they were answered, rewritten at each one.
// ModelStreamInfer answers each request message as it arrives (its id, the version, the
// inputs' sum); a stream whose message has id "fail" ends with UNAVAILABLE there; messages
// whose id starts with "hold" are answered only once the client ends its stream (a
// client-streaming call: the backend's first bytes come after the whole request).
// /test.Echo/Say, a service without a schema (raw bytes), answers with its version's name:
// what the gateway routes by a metadata header, as it reads none of its messages.
// /test.Echo/Chat, its bidirectional call, speaks first: it sends its version's name as soon
// as the call opens, before any request message, then answers each message M with
// "<version>:M" and ends when the client does.
// Exits when its parent closes stdin.
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith('--')) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []));
const version = args.version ?? 'v1';
const unavailableEvery = Number(args['unavailable-every'] ?? 0);
const latencyMs = Number(args['latency-ms'] ?? 0);
const maxAgeMs = Number(args['max-connection-age-ms'] ?? 0);

const here = path.dirname(fileURLToPath(import.meta.url));
const definition = protoLoader.loadSync(path.join(here, 'inference.proto'),
                                        { keepCase: true, longs: Number, defaults: true });
const inference = grpc.loadPackageDefinition(definition).inference;

let calls = 0;
let cancelled = 0;
const later = (fn) => (latencyMs > 0 ? setTimeout(fn, latencyMs) : setImmediate(fn));
const server = new grpc.Server(maxAgeMs > 0
  ? { 'grpc.max_connection_age_ms': maxAgeMs, 'grpc.max_connection_age_grace_ms': 10000 }
  : {});
server.addService(inference.GRPCInferenceService.service, {
  ServerLive: (_call, done) => done(null, { live: true }),
  ServerReady: (_call, done) => done(null, { ready: true }),
  ModelReady: (call, done) => done(null, { ready: call.request.name === 'm' }),
  ModelInfer: (call, done) => {
    calls += 1;
    call.on('cancelled', () => {
      cancelled += 1;
      if (args['cancel-file']) writeFileSync(args['cancel-file'], `${cancelled}\n`);
    });
    const fail = unavailableEvery > 0 && calls % unavailableEvery === 0;
    later(() => {
      if (fail) {
        done({ code: grpc.status.UNAVAILABLE, details: `${version} is overloaded` });
        return;
      }
      const values = call.request.inputs.flatMap((t) => t.contents?.fp32_contents ?? []);
      const sum = values.reduce((a, b) => a + b, 0);
      done(null, {
        model_name: call.request.model_name,
        model_version: version,
        id: call.request.id,
        outputs: [{ name: 'sum', datatype: 'FP32', shape: [1], contents: { fp32_contents: [sum] } }],
      });
    });
  },
  ModelStreamInfer: (call) => {
    const held = [];
    const answer = (request) => {
      const values = request.inputs.flatMap((t) => t.contents?.fp32_contents ?? []);
      call.write({
        infer_response: {
          model_name: request.model_name,
          model_version: version,
          id: request.id,
          outputs: [{ name: 'sum', datatype: 'FP32', shape: [1],
                      contents: { fp32_contents: [values.reduce((a, b) => a + b, 0)] } }],
        },
      });
    };
    call.on('data', (request) => {
      if (request.id === 'fail') {
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: `${version} lost the stream` });
      } else if (request.id.startsWith('hold')) {
        held.push(request);
      } else {
        later(() => answer(request));
      }
    });
    call.on('end', () => later(() => {
      held.forEach(answer);
      call.end();
    }));
  },
});
const raw = (b) => b;
server.addService({
  Say: { path: '/test.Echo/Say', requestStream: false, responseStream: false,
         requestSerialize: raw, requestDeserialize: raw,
         responseSerialize: raw, responseDeserialize: raw },
  Chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true,
          requestSerialize: raw, requestDeserialize: raw,
          responseSerialize: raw, responseDeserialize: raw },
}, {
  Say: (_call, done) => done(null, Buffer.from(version)),
  Chat: (call) => {
    call.write(Buffer.from(version));
    call.on('data', (m) => call.write(Buffer.from(`${version}:${m.toString()}`)));
    call.on('end', () => call.end());
  },
});
const credentials = args.cert
  ? grpc.ServerCredentials.createSsl(args['client-ca'] ? readFileSync(args['client-ca']) : null,
                                     [{ private_key: readFileSync(args.key),
                                        cert_chain: readFileSync(args.cert) }],
                                     Boolean(args['client-ca']))
  : grpc.ServerCredentials.createInsecure();
server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  writeFileSync(args['port-file'], `${port}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
