// @grpc/grpc-js + @grpc/proto-loader (npm) against an rdubbo tri provider, loading the
// same echo.proto at run time. Prints one JSON object of what it saw; the Rust test
// asserts on it. Usage: node grpc_js_client.js HOST:PORT PROTO_DIR
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [addr, protoDir] = process.argv.slice(2);
const def = loader.loadSync(path.join(protoDir, "echo.proto"), {
  defaults: true,
  includeDirs: [protoDir],
});
const echo = grpc.loadPackageDefinition(def).rdubbo.echo;
const client = new echo.Echo(addr, grpc.credentials.createInsecure());
const soon = (ms) => ({ deadline: Date.now() + ms });

const unary = (req, opts = soon(10000)) =>
  new Promise((resolve) =>
    client.UnaryEcho(req, opts, (err, res) =>
      resolve(err ? ["ERR", grpc.status[err.code], err.details] : ["OK", res.message]),
    ),
  );

const collect = (call) =>
  new Promise((resolve) => {
    const seen = [];
    call.on("data", (m) => seen.push([m.message, m.index]));
    call.on("error", (e) => resolve([seen, grpc.status[e.code], e.details]));
    call.on("end", () => resolve([seen, "OK", ""]));
  });

(async () => {
  const out = {};
  out.unary = await unary({ message: "hi" });
  out.server_stream = await collect(client.ServerStreamingEcho({ message: "s", count: 3 }, soon(10000)));
  out.client_stream = await new Promise((resolve) => {
    const call = client.ClientStreamingEcho(soon(10000), (err, res) =>
      resolve(err ? ["ERR", grpc.status[err.code]] : [res.message, res.index]),
    );
    for (const m of ["a", "b", "c"]) call.write({ message: m });
    call.end();
  });
  out.bidi = await new Promise((resolve) => {
    // One at a time: the next request goes when the previous answer came.
    const words = ["x", "y", "z"];
    const seen = [];
    const call = client.BidirectionalStreamingEcho(soon(10000));
    call.on("data", (m) => {
      seen.push(m.message);
      if (seen.length < words.length) call.write({ message: words[seen.length] });
      else call.end();
    });
    call.on("error", (e) => resolve(["ERR", grpc.status[e.code]]));
    call.on("end", () => resolve(seen));
    call.write({ message: words[0] });
  });
  out.unary_error = await unary({ message: "no", fail: true });
  out.unary_deadline = await unary({ message: "slow", delayMs: 5000 }, soon(300));
  out.stream_error = await collect(client.ServerStreamingEcho({ message: "late", count: 2, fail: true }, soon(10000)));
  out.cancel = await new Promise((resolve) => {
    const call = client.ServerStreamingEcho({ message: "tick", count: 1000, delayMs: 20 }, soon(30000));
    const seen = [];
    call.on("data", (m) => {
      seen.push(m.index);
      if (seen.length === 2) call.cancel();
    });
    call.on("error", (e) => resolve([seen.slice(0, 2), grpc.status[e.code]]));
    call.on("end", () => resolve([seen, "OK"]));
  });
  out.ping = await new Promise((resolve) =>
    client.Ping({}, soon(10000), (err) => resolve(err ? grpc.status[err.code] : "OK")),
  );
  console.log(JSON.stringify(out));
  client.close();
})();
