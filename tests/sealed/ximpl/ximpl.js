// Drives an independent kubeseal-compatible implementation for tests/sealed.
// One JSON request on stdin, one JSON answer on stdout. Requests:
//   {"op": "seal", "cert": PEM, "scope": "strict"|"namespace"|"cluster",
//    "namespace": str, "name": str, "values": {key: utf-8 string}}
//        -> the SealedSecret manifest built by @socialgouv/aes-gcm-rsa-oaep
//   {"op": "decrypt", "key": PKCS#8 PEM, "label": str, "values": {key: base64}}
//        -> {key: utf-8 string}, decrypted by that package's HybridDecrypt
//   {"op": "gcm-open", "key": base64, "data": base64}
//        -> {"plaintext": base64}: AES-256-GCM, zero 12-byte nonce, tag last, node:crypto
'use strict';

const nodeCrypto = require('node:crypto');
const ximpl = require('@socialgouv/aes-gcm-rsa-oaep');

const subtle = nodeCrypto.webcrypto.subtle;

function pemBody(pem) {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

async function seal(req) {
  return ximpl.getSealedSecret({
    pemKey: req.cert, scope: req.scope, namespace: req.namespace, name: req.name,
    values: req.values,
  });
}

async function decrypt(req) {
  const key = await subtle.importKey('pkcs8', pemBody(req.key),
    { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['decrypt']);
  const label = Buffer.from(req.label, 'utf8');
  const out = {};
  for (const [name, value] of Object.entries(req.values)) {
    const blob = Buffer.from(value, 'base64');
    const ab = blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.byteLength);
    out[name] = await ximpl.HybridDecrypt(key, ab, label);
  }
  return out;
}

function gcmOpen(req) {
  const data = Buffer.from(req.data, 'base64');
  const decipher = nodeCrypto.createDecipheriv('aes-256-gcm', Buffer.from(req.key, 'base64'),
    Buffer.alloc(12));
  decipher.setAuthTag(data.subarray(data.length - 16));
  const plain = Buffer.concat([decipher.update(data.subarray(0, data.length - 16)),
    decipher.final()]);
  return { plaintext: plain.toString('base64') };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const ops = { seal, decrypt, 'gcm-open': gcmOpen };
  if (!ops[req.op]) throw new Error(`unknown op ${req.op}`);
  process.stdout.write(JSON.stringify(await ops[req.op](req)));
}

main().catch((err) => {
  process.stderr.write(`${err && err.name}: ${err && err.message}\n`);
  process.exit(1);
});
