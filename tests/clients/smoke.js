const { io } = require("socket.io-client");
const s = io(process.argv[2], { auth: { name: "node" } });
s.on("connect", () => {
  console.log("connected", s.id, s.io.engine.transport.name);
  s.emit("echo", "hi", 42, (a, b) => {
    console.log("ack", a, b);
    s.emit("echo", Buffer.from([1,2,3]), (buf) => { console.log("bin", buf); 
      setTimeout(() => { console.log("transport", s.io.engine.transport.name); s.close(); }, 300); });
  });
});
s.on("connect_error", (e) => { console.log("connect_error", e.message); process.exit(1); });
