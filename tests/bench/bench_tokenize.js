// bench_tokenize.js - the JavaScript GPT-2 tokenizers from npm on the same text and the same chunks as
// bench_tokenize.c: tiktoken (Rust compiled to WebAssembly) and js-tiktoken (pure JavaScript).
// usage: node bench_tokenize.js NODE_MODULES_PARENT TEXT_FILE REPEAT
// Prints, per tokenizer, the token count and 32-bit FNV-1a of the ids in chunk order (to compare with
// sm_tok for exactness) and its best-of-REPEAT throughput in MB/s (10^6 input bytes per second) and in MB
// per CPU-second of the node process (less sensitive to other load on a shared machine).
'use strict';
const fs = require('fs');
const path = require('path');
const [dir, file, repeatArg] = process.argv.slice(2);
const repeat = Math.max(1, parseInt(repeatArg || '3', 10));
const buf = fs.readFileSync(file);
const chunks = [];
for (let pos = 0; pos < buf.length;) {
  let end = pos + 65536;
  if (end >= buf.length) end = buf.length;
  else {
    const nl = buf.indexOf(10, end);
    end = nl < 0 ? buf.length : nl + 1;
  }
  chunks.push(buf.toString('utf8', pos, end));
  pos = end;
}
const req = (m) => require(path.join(dir, 'node_modules', m));
const version = (m) => JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', m, 'package.json'))).version;
const tokenizers = [
  ['tiktoken', 'wasm', () => { const e = req('tiktoken').get_encoding('gpt2'); return (s) => e.encode(s, [], []); }],
  ['js-tiktoken', 'js', () => { const e = req('js-tiktoken').getEncoding('gpt2'); return (s) => e.encode(s, [], []); }],
];
for (const [name, kind, make] of tokenizers) {
  const enc = make();
  let h = 2166136261, n = 0;
  for (const c of chunks) {
    const ids = enc(c);
    n += ids.length;
    for (let i = 0; i < ids.length; i++) h = Math.imul(h ^ ids[i], 16777619) >>> 0;
  }
  let best = Infinity, bestCpu = Infinity;
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    for (const c of chunks) enc(c);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9, cu = process.cpuUsage(c0);
    if (dt < best) best = dt;
    if ((cu.user + cu.system) / 1e6 < bestCpu) bestCpu = (cu.user + cu.system) / 1e6;
  }
  console.log(`${name} ${version(name)} (${kind}) threads=1: ${(buf.length / 1e6 / best).toFixed(2)} MB/s ` +
              `(${(n / 1e6 / best).toFixed(2)} M tokens/s, ${n} tokens, best of ${repeat}); ${(buf.length / 1e6 / bestCpu).toFixed(2)} MB per CPU-second; ` +
              `ids fnv1a32 ${h.toString(16).padStart(8, '0')}`);
}
