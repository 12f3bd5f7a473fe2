// The bare client of `relaytop bench ingest`, in Node with the `ws` package: connects to the
// blaster, asks for one response, JSON.parses every frame, counts chunks to `done`.
// `npm install ws` (in this directory, or on NODE_PATH), then
// `relaytop bench ingest --node benches/clients/node-ws.cjs`.
const WebSocket = require("ws");

const url = process.argv[2];
const started = process.hrtime.bigint();
const ws = new WebSocket(url);
let chunks = 0;
let chars = 0;
ws.on("open", () => {
  ws.send(
    JSON.stringify({
      type: "chat.completion",
      model: "bench",
      messages: [{ role: "user", content: "stream" }],
      stream: true,
    }),
  );
});
ws.on("message", (data) => {
  const frame = JSON.parse(data.toString());
  if (frame.type === "chunk") {
    chunks += 1;
    chars += frame.content ? frame.content.length : 0;
  } else if (frame.type === "done") {
    const us = (process.hrtime.bigint() - started) / 1000n;
    console.log(`${chunks} chunks, ${chars} chars in ${us} us`);
    ws.close();
  }
});
ws.on("error", (e) => {
  console.error(`node-ws: ${e.message}`);
  process.exit(1);
});
