// Prints every realtime event one user receives, acknowledging messaging:new (✓✓).
// Usage: node tests/js/watch.js <server-url> <tenantId> <token>
const { io } = require("socket.io-client");
const [url = "http://127.0.0.1:8080", tenant = "acme", token] = process.argv.slice(2);
if (!token) {
  console.error("usage: node tests/js/watch.js <server-url> <tenantId> <token>");
  process.exit(2);
}
const socket = io(url, { path: `/api/tenants/${tenant}/messaging/socket`, auth: { token } });
socket.on("connect", () => console.log(`connected as socket ${socket.id}; waiting for events (Ctrl-C to quit)`));
socket.on("connect_error", (err) => console.error(`connect_error: ${err.message}`));
socket.onAny((event, ...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  console.log(event, JSON.stringify(args[0], null, 2));
  if (ack) ack({ ok: true });
});
