// A plain HTTP/2 model server (h2c) played by Node's own node:http2, for the gateway's HTTP/2
// upstream tests outside gRPC: one model version per process.
//   node h2_backend.mjs --version v1 --port-file FILE
// Listens on 127.0.0.1:0 and writes its port to FILE. Every request is answered 200 with a
// JSON body {"version", "method", "path"}, its Content-Length, Content-Type and x-backend
// (the version); a HEAD request gets the same head and no body. By the query string:
//   ?answer=empty     204, no body
//   ?answer=trailers  a body without a length, sent in two writes, then the trailer
//                     x-checksum: ok
//   ?answer=big-head  200 with a field of 70,000 bytes (x-big), past what the gateway takes
// Exits when its parent closes stdin.
import http2 from 'node:http2';
import { writeFileSync, renameSync } from 'node:fs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith('--')) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []));
const version = args.version ?? 'v1';

const server = http2.createServer({ maxSendHeaderBlockLength: 1 << 20 });
server.on('stream', (stream, headers) => {
  const method = headers[':method'];
  const path = headers[':path'];
  stream.on('error', () => {});
  stream.resume();  // the request body is not read
  const answer = new URLSearchParams(path.split('?')[1] ?? '').get('answer');
  if (answer === 'empty') {
    stream.respond({ ':status': 204, 'x-backend': version }, { endStream: true });
    return;
  }
  if (answer === 'big-head') {
    stream.respond({ ':status': 200, 'x-big': 'b'.repeat(70000) }, { endStream: true });
    return;
  }
  if (answer === 'trailers') {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-backend': version },
                   { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'ok' }));
    stream.write('first ');
    setImmediate(() => stream.end('second'));
    return;
  }
  const body = Buffer.from(JSON.stringify({ version, method, path }));
  stream.respond({ ':status': 200, 'content-type': 'application/json',
                   'content-length': body.length, 'x-backend': version },
                 { endStream: method === 'HEAD' });
  if (method !== 'HEAD') stream.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const file = args['port-file'];
  writeFileSync(`${file}.tmp`, `${server.address().port}\n`);
  renameSync(`${file}.tmp`, file);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
