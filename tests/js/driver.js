// Drives real socket.io-client sockets for AfriTalk's black-box tests.
// Reads one JSON command per line on stdin, writes one JSON report per line on stdout.
//   {op:"connect", client, url, path, token, transports?, autoAck? (false | "empty"), ca? (PEM to trust)}
//   {op:"emit", client, event, data, ref, timeoutMs?}   -> {kind:"ack", ref, data} | {kind:"ack_timeout", ref}
//   {op:"emitRaw", client, event, data}                  (no ack requested)
//   {op:"disconnect", client}
// Reports: connected {client,id,transport} | connect_error {client,message}
//          event {client,event,data} | disconnected {client,reason}
const { io } = require("socket.io-client");
const readline = require("readline");

const sockets = new Map();
const report = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect(cmd) {
  const socket = io(cmd.url, {
    path: cmd.path,
    auth: cmd.token === undefined ? undefined : { token: cmd.token },
    transports: cmd.transports || ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    extraHeaders: cmd.headers || {},
    // Node's TLS options, passed on by engine.io-client to both transports.
    ca: cmd.ca || undefined,
  });
  sockets.set(cmd.client, socket);
  socket.on("connect", () =>
    report({ client: cmd.client, kind: "connected", id: socket.id, transport: socket.io.engine.transport.name })
  );
  socket.on("connect_error", (err) =>
    report({ client: cmd.client, kind: "connect_error", message: err.message, data: err.data || null })
  );
  socket.on("disconnect", (reason) => report({ client: cmd.client, kind: "disconnected", reason }));
  socket.onAny((event, ...args) => {
    const last = args[args.length - 1];
    const wantsAck = typeof last === "function";
    if (wantsAck) args.pop();
    report({ client: cmd.client, kind: "event", event, data: args.length ? args[0] : null, ackRequested: wantsAck });
    // autoAck "empty" answers as many clients do, with no argument at all.
    if (wantsAck && cmd.autoAck === "empty") last();
    else if (wantsAck && cmd.autoAck !== false) last({ ok: true });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    report({ kind: "driver_error", message: "bad command: " + e.message });
    return;
  }
  const socket = sockets.get(cmd.client);
  switch (cmd.op) {
    case "connect":
      connect(cmd);
      break;
    case "emit":
      if (!socket) return report({ kind: "driver_error", message: "no client " + cmd.client });
      socket.timeout(cmd.timeoutMs || 5000).emit(cmd.event, cmd.data, (err, ack) => {
        if (err) report({ client: cmd.client, kind: "ack_timeout", ref: cmd.ref });
        else report({ client: cmd.client, kind: "ack", ref: cmd.ref, data: ack });
      });
      break;
    case "emitRaw":
      if (socket) socket.emit(cmd.event, cmd.data);
      break;
    case "disconnect":
      if (socket) socket.disconnect();
      break;
    default:
      report({ kind: "driver_error", message: "unknown op " + cmd.op });
  }
});
rl.on("close", () => {
  for (const s of sockets.values()) s.disconnect();
  process.exit(0);
});
report({ kind: "ready" });
