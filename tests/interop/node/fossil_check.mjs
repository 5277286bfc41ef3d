// Cross-checks wsend's Fossil deltas with the npm package fossil-delta.
//
// Reads one JSON object on stdin: {"cases": [{"source", "target", "delta"}]}, each a base64
// string, "delta" made by wsend (wsend.hub.fossil.create). For each case, applies wsend's delta
// with fossil-delta's applyDelta and makes fossil-delta's own delta (createDelta); writes one
// JSON object: {"results": [{"applied": base64 | null, "error": string | null, "delta": base64}]}.
import { applyDelta, createDelta } from "fossil-delta";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { cases } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const b64 = (data) => Buffer.from(data).toString("base64");

const results = cases.map(({ source, target, delta }) => {
  const result = { applied: null, error: null, delta: b64(createDelta(bytes(source), bytes(target))) };
  try {
    result.applied = b64(applyDelta(bytes(source), bytes(delta)));
  } catch (err) {
    result.error = String(err);
  }
  return result;
});
process.stdout.write(JSON.stringify({ results }));
